"""How the chat behaves for a person using it (issue 25): it follows a reply after a reload,
reaches every session, labels turns truthfully, shows each thing once, stops on request, has
keyboard shortcuts, an agent picker, timestamps, empty states and loading placeholders. One
server per test; each test failed on the code before the change it checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_chat import chat_server, open_chat, send, turn_ids
from tests.e2e.test_web import open_app, setup
from tests.helpers.models import control, model_server, say
from tests.helpers.server import SECRET, Api, add_user, user_client, wait_until

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

# Distance from the conversation's end to the bottom of its view, in pixels.
GAP = "(() => { const r = document.getElementById('conversation'); return r.scrollHeight - r.scrollTop - r.clientHeight; })()"


def words_shown(page: Page, task: str) -> int:
    text = page.get_attribute(f'.turn[data-task="{task}"] .bubble.assistant', "data-text") or ""
    return len(text.split())


def in_view(page: Page, selector: str) -> bool:
    """The element is inside the conversation's visible box."""
    return bool(
        page.evaluate(
            """(sel) => {
              const el = document.querySelector(sel); if (!el) return false;
              const r = document.getElementById('conversation').getBoundingClientRect();
              const b = el.getBoundingClientRect();
              return b.height > 0 && b.top >= r.top - 1 && b.bottom <= r.bottom + 1;
            }""",
            selector,
        )
    )


def badge(page: Page, task: str) -> str:
    return page.inner_text(f'.turn[data-task="{task}"] > .turn-head .badge')


# ---- 1. follow mode --------------------------------------------------------------------------


def test_follow_lands_at_the_end_after_a_reload_mid_reply_and_offers_jump_to_latest(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(make_server, fake_llm, tmp_path)
    for _ in range(2):  # a conversation taller than the view
        api.wait_status(say(api, sid, "words 250")["id"], "completed")
    control(fake_llm, tokens_per_s=30)
    turn = say(api, sid, "words 600")["id"]
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    wait_until(lambda: words_shown(page, turn) > 120, what="a long part of the reply")
    page.reload()  # mid-reply: the page comes back to a reply already many lines long
    page.wait_for_selector("#conn[data-kind=live]")
    wait_until(lambda: words_shown(page, turn) > 0, what="the reply after the reload")
    for _ in range(3):  # while it streams, the end stays in view
        n = words_shown(page, turn)
        wait_until(lambda: words_shown(page, turn) > n + 15, what="more of the reply")  # noqa: B023
        wait_until(lambda: page.evaluate(GAP) < 60, timeout=3, what="the view to follow the end")
    assert page.is_hidden("#chat-jump")

    # Scrolled up: the view stays, and new text waits behind "Jump to latest".
    page.evaluate("document.getElementById('conversation').scrollTop = 0")
    page.wait_for_selector("#chat-jump:visible")
    assert page.evaluate("document.getElementById('conversation').scrollTop") == 0
    shot(page, "chat-jump-to-latest")
    page.click("#chat-jump")
    wait_until(lambda: page.evaluate(GAP) < 60, what="the jump to the end")
    assert page.is_hidden("#chat-jump")
    n = words_shown(page, turn)
    wait_until(lambda: words_shown(page, turn) > n + 15, what="more of the reply")
    wait_until(lambda: page.evaluate(GAP) < 60, timeout=3, what="following again")

    # Scrolled up again, a message sent from the composer is brought into view.
    page.evaluate("document.getElementById('conversation').scrollTop = 0")
    page.wait_for_selector("#chat-jump:visible")
    send(page, "echo: the newest message")
    mine = wait_until(lambda: len(ids := turn_ids(api, sid)) == 4 and ids[3])
    page.wait_for_selector(f'.turn[data-task="{mine}"] .bubble.user')
    wait_until(
        lambda: in_view(page, f'.turn[data-task="{mine}"] .bubble.user'),
        timeout=3,
        what="the sent message in view",
    )
    ctx.close()


# ---- 2. every session reachable ------------------------------------------------------------


def test_every_session_is_reachable_and_an_unknown_one_says_not_found(
    browser: Browser, make_server: Any
) -> None:
    server, api, _ = setup(make_server, "s00")
    ids = [_] + [api.session(f"s{i:02d}") for i in range(1, 56)]  # 56 sessions, s55 the newest
    oldest = ids[0]
    task = str(api.start(oldest, "one_item", {"item": "from the oldest"})["id"])
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_app(ctx, server, ids[-1])
    page.wait_for_selector(f'#sessions li[data-session="{ids[-1]}"]')
    assert page.locator("#sessions li").count() == 50
    # Scrolling the sidebar to its end loads the older ones.
    page.hover("#sidebar")
    page.mouse.wheel(0, 20_000)
    page.wait_for_selector(f'#sessions li[data-session="{oldest}"]', timeout=5000)
    assert page.locator("#sessions li").count() == 56
    shot(page, "sessions-paged")

    # A link to a session older than the first page opens it.
    page.goto(f"{server.url}/?session={oldest}&poll_ms=300")
    page.wait_for_selector(f'li.task[data-task="{task}"][data-status="completed"]')
    assert page.inner_text("#session-title") == "s00"
    assert oldest in page.evaluate("location.search")

    # An unknown id, or another person's session: "not found", not the newest session.
    add_user(server, "other", "other-password-123")
    c = user_client(server, "other", "other-password-123")
    theirs = c.post("/api/sessions", json={"title": "not yours"}).json()["id"]
    c.close()
    for sid in ("s_0123456789abcdef", theirs):
        page.goto(f"{server.url}/?session={sid}&poll_ms=300")
        page.wait_for_selector("#not-found:visible")
        assert "This session was not found" in page.inner_text("#not-found")
        assert page.is_hidden("#main") and page.is_hidden("#title-box")
        assert "not yours" not in page.inner_text("body")
    shot(page, "session-not-found")
    page.click("#to-sessions")
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.inner_text("#session-title") == "s55"
    assert page.is_hidden("#not-found")
    ctx.close()


# ---- 3. labels that follow the turn --------------------------------------------------------


def test_waiting_stopped_and_renamed_are_said_truthfully_in_every_tab(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=20)
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    first = say(api, sid, "words 400")["id"]
    wait_until(lambda: words_shown(page, first) > 5, what="the first reply")
    second = say(api, sid, "second, words 200")["id"]
    # Behind the first turn, the second says it waits (not "running"); its button cancels.
    page.wait_for_selector(f'.turn[data-task="{second}"] .note-waiting')
    wait_until(lambda: badge(page, second) == "Waiting", what="the waiting badge")
    button = page.locator(f'.turn[data-task="{second}"] > .turn-head button')
    assert button.inner_text() == "Cancel"
    assert "not started" in (button.get_attribute("aria-label") or "")
    assert badge(page, first) == "Working"
    shot(page, "chat-waiting")

    api.c.post(f"/api/tasks/{first}/cancel")
    api.wait_status(first, "cancelled")
    # The second starts: its waiting note goes while it streams.
    wait_until(lambda: words_shown(page, second) > 3, what="the second reply to stream")
    assert page.locator(f'.turn[data-task="{second}"] .note-waiting').count() == 0
    assert badge(page, second) == "Working"
    # The stopped reply keeps its text, without a typing cursor, said "Stopped".
    stopped = f'.turn[data-task="{first}"] .bubble.assistant'
    wait_until(lambda: badge(page, first) == "Stopped", what="the Stopped badge")
    assert page.locator(f"{stopped}.streaming").count() == 0
    assert words_shown(page, first) > 5
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]")
    page.wait_for_selector(stopped)
    assert page.locator(f"{stopped}.streaming").count() == 0
    assert badge(page, first) == "Stopped"
    assert page.locator(f'.turn[data-task="{second}"] .note-waiting').count() == 0

    # A rename in one tab reaches another (another browser, here) without a reload.
    other = browser.new_context(viewport=PHONE)
    tab_b = open_chat(other, server, sid)
    page.click("#rename")
    page.fill("#rename-input", "Renamed in tab A")
    page.press("#rename-input", "Enter")
    wait_until(
        lambda: tab_b.inner_text("#session-title") == "Renamed in tab A",
        what="the new title in tab B",
    )
    tab_b.click("#menu")
    # (the drawer slides in: its text is there once it is visible)
    tab_b.wait_for_selector(f'#sessions li[data-session="{sid}"]', state="visible")
    assert "Renamed in tab A" in tab_b.inner_text(f'#sessions li[data-session="{sid}"]')
    tab_b.keyboard.press("Escape")
    tab_b.click("#tab-timeline")
    tab_b.wait_for_selector("li.ev:has-text('Renamed the session')")
    assert [e["data"] for e in api.all_events(sid) if e["type"] == "session.renamed"] == [
        {"title": "Renamed in tab A"}
    ]
    api.c.post(f"/api/tasks/{second}/cancel")
    other.close()
    ctx.close()


# ---- 4. each thing shown once ----------------------------------------------------------------

BROKEN = """
[agents.broken]
model = "anthropic:broken-model"
base_url = "{url}"
api_key_env = "TETHER_TEST_BAD_KEY"
description = "Always fails: its key is refused."
"""


def test_a_sub_agents_answer_a_reply_and_a_failure_are_each_shown_once(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server = model_server(
        make_server,
        fake_llm,
        tmp_path,
        extra=BROKEN.format(url=fake_llm.url),
        TETHER_HEARTBEAT_S="0.3",
        TETHER_TEST_BAD_KEY="sk-bad-key",
    )
    api = Api(server.client())
    sid = api.session("once")
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)

    delegating = say(api, sid, "please delegate: alpha | beta")["id"]
    api.wait_status(delegating, "completed")
    page.wait_for_selector(f'.turn[data-task="{delegating}"][data-status="completed"]')
    answers = {
        e["data"]["toolCallId"]: e["data"]["content"]
        for e in api.all_events(sid)
        if e["type"] == "TOOL_CALL_RESULT"
    }
    assert len(answers) == 2
    for call, answer in answers.items():
        card = page.locator(f'.tool[data-tool-call="{call}"]')
        card.locator(".subagent .badge[data-status=completed]").wait_for()
        assert card.inner_text().count(answer) == 1, card.inner_text()

    # A reply streamed in dozens of deltas is one row of the timeline, which grows.
    control(fake_llm, tokens_per_s=80)  # (deltas closer than 50 ms apart are one event)
    words = say(api, sid, "words 300")["id"]
    api.wait_status(words, "completed")
    page.wait_for_selector(f'.turn[data-task="{words}"][data-status="completed"]')
    events = [e for e in api.all_events(sid) if e["task_id"] == words]
    assert len(events) > 50
    rows = page.locator(f'li.ev[data-task="{words}"]')
    wait_until(lambda: "Finished" in rows.last.inner_text(), what="the turn's last row")
    assert rows.count() <= 8, rows.all_inner_texts()
    texts = page.locator("li.ev .what").all_inner_texts()
    assert not [t for t in texts if re.search(r"Wrote “\s*”", t)], texts
    assert any(re.fullmatch(r"Wrote 1,\d{3} characters: “Reply .* w0 w1 .*”", t) for t in texts), (
        texts
    )

    # A failed turn: its error once in the chat, once in the timeline.
    failed = say(api, sid, "hello", agent="broken")["id"]
    api.wait_status(failed, "failed")
    error = api.task(failed)["error"]["message"]
    page.wait_for_selector(f'.turn[data-task="{failed}"][data-status="failed"]')
    rows = page.locator(f'li.ev[data-task="{failed}"] .what')
    wait_until(lambda: any(error in t for t in rows.all_inner_texts()), what="the failure")
    assert page.inner_text(f'.turn[data-task="{failed}"]').count(error) == 1
    assert sum(error in t for t in rows.all_inner_texts()) == 1, rows.all_inner_texts()
    shot(page, "shown-once")
    ctx.close()


# ---- 5 and 6. Stop, Esc and the other keys ------------------------------------------------


def test_stop_and_esc_stop_the_turn_on_the_server_and_the_keyboard_shortcuts(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=15)
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    assert page.is_hidden("#stop")

    send(page, "words 400")
    first = wait_until(lambda: turn_ids(api, sid))[0]
    wait_until(lambda: words_shown(page, first) > 5, what="the reply")
    page.wait_for_selector("#stop:visible")
    shot(page, "composer-stop")
    page.click("#stop")
    api.wait_status(first, "cancelled")
    wait_until(lambda: badge(page, first) == "Stopped", what="Stopped")
    assert page.locator(f'.turn[data-task="{first}"] .bubble.streaming').count() == 0
    assert words_shown(page, first) > 5  # what was shown stays
    page.wait_for_selector("#stop", state="hidden")

    # `?` lists the shortcuts in a dialog; Esc closes it first and stops nothing.
    send(page, "words 400")
    second = wait_until(lambda: len(ids := turn_ids(api, sid)) == 2 and ids[1])
    wait_until(lambda: words_shown(page, second) > 3, what="the second reply")
    page.focus("#conversation")
    page.keyboard.press("?")
    dialog = page.locator("dialog#shortcuts")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.activeElement.closest('dialog')?.id") == "shortcuts"
    for words in ("Ctrl", "New session", "Esc", "Stop"):
        assert words.lower() in dialog.inner_text().lower(), words
    shot(page, "shortcuts")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert api.task(second)["status"] == "running"
    # Esc (in the message box, too) stops the reply.
    page.focus("#message")
    page.keyboard.press("Escape")
    api.wait_status(second, "cancelled")

    # `/` puts the cursor in the message box (not when typing elsewhere).
    page.focus("#conversation")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "message"
    assert page.input_value("#message") == ""
    # ↑ in an empty message box asks the conversation to edit the last message.
    page.evaluate("window.tether.conversation.editLast = () => { window.__edit = true; }")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("window.__edit") is True
    page.fill("#message", "typed")
    page.evaluate("window.__edit = false")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("window.__edit") is False
    page.fill("#message", "")
    # N (not while typing) starts a new session; Ctrl+K is search's (tests/e2e/test_search.py).
    before = page.evaluate("location.search")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("n")
    wait_until(lambda: page.evaluate("location.search") != before, what="a new session")
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.locator("#sessions li").count() == 2
    assert page.locator(".turn").count() == 0
    ctx.close()


# ---- 7. agent picker, timestamps, empty states, loading --------------------------------------

OFFLINE = """
[agents.offline]
model = "anthropic:offline-model"
base_url = "{url}"
api_key_env = "TETHER_TEST_UNSET_KEY"
description = "Has no key."
"""


def test_agent_picker_timestamps_empty_states_and_loading_placeholders(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server = model_server(make_server, fake_llm, tmp_path, extra=OFFLINE.format(url=fake_llm.url))
    api = Api(server.client())
    # No session at all, and a link to one that is not there: both panels say so plainly.
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    page.goto(f"{server.url}/?session=s_0000000000000000#secret={SECRET}")
    page.wait_for_selector("#not-found:visible")
    assert page.is_visible("#sessions-empty")
    assert "No sessions yet" in page.inner_text("#sessions-empty")
    sid = api.session("fresh")

    # While a session loads: grey placeholders, not "Connecting…" or empty states.
    held: list[Any] = []

    def tree(url: str) -> bool:
        return "/tasks?brief=true" in url

    page.route(tree, lambda route: held.append(route))
    page.goto(f"{server.url}/?session={sid}&poll_ms=300")
    page.wait_for_selector("#chat-skeleton:visible")
    # (A Playwright call in the check lets the route handler run.)
    wait_until(lambda: page.evaluate("1") and held, what="the session's tree to be asked for")
    assert page.is_visible("#timeline-skeleton") and page.is_visible("#tree-skeleton")
    assert page.is_hidden("#chat-empty") and page.is_hidden("#tree-empty")
    assert page.inner_text("#conn-text") == "Loading…"
    shot(page, "loading")
    for route in held:
        route.continue_()
    page.unroute(tree)
    page.wait_for_selector("#conn[data-kind=live]")
    page.wait_for_selector("#chat-skeleton", state="hidden")
    for empty in ("#chat-empty", "#tree-empty", "#panel-timeline .empty-state"):
        assert page.is_visible(empty), empty
    assert "No messages yet" in page.inner_text("#chat-empty")
    assert "Nothing has happened" in page.inner_text("#panel-timeline")
    shot(page, "empty-session")

    # The picker: the model agents, the default first chosen, a not-ready one saying why.
    picker = page.locator("#chat-agent-pick")
    options = picker.locator("option").all_inner_texts()
    assert options[0] == "assistant" and "helper" in options, options
    assert any(o.startswith("offline") and "not ready" in o for o in options), options
    assert picker.input_value() == "assistant"
    picker.select_option("offline")
    assert "TETHER_TEST_UNSET_KEY" in page.inner_text("#chat-agent")
    assert page.is_disabled("#send")
    picker.select_option("helper")
    assert page.is_enabled("#send")
    send(page, "hello helper")
    turn = wait_until(lambda: turn_ids(api, sid))[0]
    assert api.task(turn)["agent"] == "helper"
    api.wait_status(turn, "completed")
    page.reload()  # the choice is remembered in this browser
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.locator("#chat-agent-pick").input_value() == "helper"

    # Timestamps: relative, the exact time on hover (title), from the log's time.
    created = next(
        e["ts"] for e in api.all_events(sid) if e["type"] == "task.created" and e["task_id"] == turn
    )
    sent = page.locator(f'.turn[data-task="{turn}"] .sent time')
    assert sent.inner_text() == "just now"
    exact = sent.get_attribute("title") or ""
    assert re.search(r"\d{4} at \d{2}:\d{2}:\d{2}", exact), exact
    iso = page.evaluate(f"new Date({created} * 1000).toISOString()")
    assert sent.get_attribute("datetime") == iso
    assert page.locator(f'.turn[data-task="{turn}"] .turn-head time[title]').count() == 1
    # Kept fresh: the page says "N min ago" as time passes (its clock moved on here).
    page.evaluate("window.tether.conversation.refreshTimes(Date.now() + 5 * 60_000)")
    assert sent.inner_text() == "5 min ago"
    shot(page, "picker-and-times")
    ctx.close()
