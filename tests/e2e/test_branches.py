"""The conversation as a tree, in Chromium (issue 25): regenerate, edit and retry make
branches, `‹ 2 / 3 ›` moves between them, and the branch shown is the session's, in every
tab, after a reload and after a kill -9 of the server; a long conversation opens on its
newest turns and draws older ones on demand, from the server's skeleton and each turn's
events; the context cut and a stopped or failed turn are said where they are; and a first
run without a key chats with the offline demo."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_chat import open_chat, send, shown_messages
from tests.helpers.models import control, messages_by_id, model_session, say
from tests.helpers.server import SECRET, Api, wait_until

DESKTOP = {"width": 1440, "height": 900}


def shown(page: Page) -> list[str]:
    """The turns drawn, top to bottom."""
    return list(
        page.eval_on_selector_all("#conversation > .turn", "els => els.map(e => e.dataset.task)")
    )


def texts(page: Page) -> list[str]:
    """The user messages drawn, top to bottom."""
    return [
        t.strip()
        for t in page.eval_on_selector_all(
            "#conversation > .turn .bubble.user",
            "els => els.map(e => e.textContent.replace('You said: ', ''))",
        )
    ]


def pager(page: Page, task: str, where: str) -> str:
    """`2 / 3` on a turn's message (where="user") or its reply ("reply"), '' if none."""
    box = (
        ".user-actions .pager-box"
        if where == "user"
        else ".msg-actions:not(.user-actions) .pager-box"
    )
    loc = page.locator(f'.turn[data-task="{task}"] {box} .pager-pos')
    return loc.inner_text() if loc.count() else ""


def newest_turn(api: Api, sid: str) -> str:
    turns = api.c.get(f"/api/sessions/{sid}/conversation").json()["turns"]
    return str(turns[-1]["id"])


def test_regenerate_edit_and_retry_make_branches_every_tab_and_a_restart_keep(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, "branches", approval=[], TETHER_HEARTBEAT_S="0.3"
    )
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    other = browser.new_context(viewport={"width": 390, "height": 844})
    tab_b = open_chat(other, server, sid)
    send(page, "first words 3")
    send(page, "second words 4")
    a, b = [t["id"] for t in api.c.get(f"/api/sessions/{sid}/conversation").json()["turns"]]
    api.wait_status(b, "completed")
    page.wait_for_selector(f'.turn[data-task="{b}"][data-status=completed] .again')
    assert page.inner_text(f'.turn[data-task="{b}"] .again') == "Regenerate"
    assert pager(page, b, "reply") == ""

    # Regenerate the second reply: a sibling, shown, `2 / 2` on the reply.
    page.click(f'.turn[data-task="{b}"] .again')
    c = wait_until(lambda: (n := newest_turn(api, sid)) != b and n)
    api.wait_status(c, "completed")
    page.wait_for_selector(f'.turn[data-task="{c}"][data-status=completed]')
    assert shown(page) == [a, c] and pager(page, c, "reply") == "2 / 2"
    assert texts(page) == ["first words 3", "second words 4"]
    wait_until(lambda: shown(tab_b) == [a, c], what="the second tab to show the new reply")

    # ‹ shows the first reply again, here and in the other tab (the server's selection).
    page.click(f'.turn[data-task="{c}"] .pager-box button >> nth=0')
    wait_until(lambda: shown(page) == [a, b], what="the first reply again")
    assert pager(page, b, "reply") == "1 / 2"
    wait_until(lambda: shown(tab_b) == [a, b], what="the other tab to follow the selection")
    shot(page, "branches-reply")

    # Edit the first message: a new first message; its own branch is shown.
    page.click(f'.turn[data-task="{a}"] .user-actions button:text-is("Edit")')
    page.fill("form.edit textarea", "first, edited words 5")
    page.press("form.edit textarea", "Enter")
    d = wait_until(lambda: (n := newest_turn(api, sid)) not in (a, b, c) and n)
    api.wait_status(d, "completed")
    wait_until(lambda: shown(page) == [d], what="the edited branch")
    assert pager(page, d, "user") == "2 / 2" and texts(page) == ["first, edited words 5"]
    assert api.task(d)["input"]["parent"] is None
    # ‹ on the message: the original, with the reply it showed last.
    page.click(f'.turn[data-task="{d}"] .user-actions .pager-box button >> nth=0')
    wait_until(lambda: shown(page) == [a, b], what="the original branch, as it was left")
    wait_until(lambda: shown(tab_b) == [a, b], what="the other tab")

    # ↑ in the empty composer edits the last message; Esc leaves it as it was.
    page.focus("#message")
    page.keyboard.press("ArrowUp")
    page.wait_for_selector("form.edit textarea:focus")
    assert page.input_value("form.edit textarea") == "second words 4"
    page.keyboard.press("Escape")
    page.wait_for_selector("form.edit", state="detached")
    assert api.task(b)["status"] == "completed"  # Esc closed the edit, stopped nothing

    # A failed turn says so, and Retry answers it again beside it.
    control(fake_llm, faults=[{"status": 400, "message": "the model refused"}])
    send(page, "third words 3")
    e = wait_until(lambda: (n := newest_turn(api, sid)) not in (a, b, c, d) and n)
    api.wait_status(e, "failed")
    page.wait_for_selector(f'.turn[data-task="{e}"][data-status=failed] .again:text-is("Retry")')
    assert "told this one failed" in page.inner_text(f'.turn[data-task="{e}"] .note-ended')
    page.click(f'.turn[data-task="{e}"] .again')
    f = wait_until(lambda: (n := newest_turn(api, sid)) != e and n)
    api.wait_status(f, "completed")
    wait_until(lambda: shown(page) == [a, b, f], what="the retried turn")
    assert pager(page, f, "reply") == "2 / 2"

    # A regenerated reply cut by kill -9: after the restart the branch is still the one shown.
    control(fake_llm, tokens_per_s=20)
    page.click(f'.turn[data-task="{f}"] .again')
    g = wait_until(lambda: (n := newest_turn(api, sid)) != f and n)
    page.wait_for_selector(f'.turn[data-task="{g}"] .bubble.assistant')
    server.kill()
    server.start()
    api = Api(server.client())
    api.wait_status(g, "completed", timeout=60)
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]")
    page.wait_for_selector(f'.turn[data-task="{g}"][data-status=completed]')
    assert shown(page) == [a, b, g] and pager(page, g, "reply") == "3 / 3"
    wait_until(lambda: shown(tab_b) == [a, b, g], what="the other tab after the restart")
    # Each reply of the branch shown is on the page once, exactly as the log has it.
    events = api.all_events(sid)
    on_path = {
        e["data"]["messageId"]: e["task_id"] for e in events if e["type"] == "TEXT_MESSAGE_START"
    }
    gone = {m for e in events if e["type"] == "message.superseded" for m in e["data"]["messageIds"]}
    want = {
        k: v for k, v in messages_by_id(events).items() if on_path[k] in (a, b, g) and k not in gone
    }
    wait_until(lambda: shown_messages(page) == want, what="the branch's replies, as logged")
    ctx.close()
    other.close()


def test_a_long_conversation_opens_on_its_newest_turns_and_draws_older_on_demand(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        "long",
        approval=[],
        extra="context_tokens = 4000\nmax_tokens = 500",
        TETHER_HEARTBEAT_S="0.3",
        # 30 messages sent at once: more than a conversation may hold unanswered by default.
        TETHER_MAX_QUEUED_TURNS="40",
    )
    turns = [say(api, sid, f"message {n}: words 120")["id"] for n in range(30)]
    api.wait_status(turns[-1], "completed", timeout=120)
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "task=" in r.url else None)
    # The page opens on the newest 100 events (here a few turns): the rest of the window is
    # drawn from the skeleton, then from each turn's own events.
    page.goto(f"{server.url}/?session={sid}&poll_ms=300&full_load=50&tail=100#secret={SECRET}")
    page.wait_for_selector("#conn[data-kind=live]")
    wait_until(lambda: shown(page) == turns[-20:], what="the newest 20 turns")
    assert "Show earlier messages (10)" in page.inner_text("#conversation .chat-earlier")
    gap = "(() => { const r = document.getElementById('conversation'); return r.scrollHeight - r.scrollTop - r.clientHeight; })()"
    wait_until(lambda: page.evaluate(gap) < 60, what="the view at the newest turn")
    # Every drawn turn is drawn from its events (no skeleton stand-in remains).
    wait_until(
        lambda: (
            page.locator('#conversation .bubble.assistant[data-message^="summary-"]').count() == 0
        ),
        what="each turn's events",
    )
    # It did not read the whole log: the newest turns' events came with the skeleton.
    total = len(api.all_events(sid))
    assert page.evaluate("window.tether.stats().events") < total / 2
    assert reads == []
    # The newest reply was sent without the oldest turns: said where the cut is.
    note = page.locator("#conversation .context-note")
    assert note.count() == 1 and "not sent to the model" in note.inner_text()
    # Older turns on demand; the reader stays where they were.
    page.evaluate("document.getElementById('conversation').scrollTop = 0")
    first = shown(page)[0]
    top = page.evaluate(
        f"document.querySelector('.turn[data-task=\"{first}\"]').getBoundingClientRect().top"
    )
    page.click("#conversation .chat-earlier")
    wait_until(lambda: shown(page) == turns, what="all 30 turns")
    # The older ten were read together, once each, none that the page already had.
    wait_until(lambda: reads, what="the older turns' events")
    fetched = [t for u in reads for t in re.findall(r"task=([^&]+)", u)]
    assert sorted(fetched) == sorted(turns[:10]) and len(reads) == 1, reads
    after = page.evaluate(
        f"document.querySelector('.turn[data-task=\"{first}\"]').getBoundingClientRect().top"
    )
    assert abs(after - top) < 4, (top, after)
    assert page.locator("#conversation .chat-earlier").count() == 0
    wait_until(
        lambda: (
            page.locator('#conversation .bubble.assistant[data-message^="summary-"]').count() == 0
        ),
        what="the older turns' events",
    )
    ctx.close()


def test_a_first_run_without_a_key_chats_with_the_offline_demo(
    browser: Browser, make_server: Any
) -> None:
    server = make_server(TETHER_HEARTBEAT_S="0.3", TETHER_DEMO_WORDS_PER_S="120")
    sid = Api(server.client()).session("first run")
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    page.goto(f"{server.url}/?session={sid}#secret={SECRET}")
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.is_visible("#composer") and page.is_hidden("#no-model")
    assert page.input_value("#chat-agent-pick") == "demo"
    assert "Scripted demo" in page.inner_text("#demo-note")
    page.fill("#message", "Hello, show me around")
    page.press("#message", "Enter")
    page.wait_for_selector(".approval button.approve", timeout=30_000)
    assert page.locator(".turn .subagent").count() == 2
    assert page.locator(".tool .tool-name:text-is('Tool: list_files')").count() == 1
    assert "notes.md" in page.inner_text(".approval")
    shot(page, "demo-approval")
    # On a phone, from the Tasks tab: the Chat tab and the task say it needs you.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    small = phone.new_page()
    small.goto(f"{server.url}/?session={sid}#secret={SECRET}")
    small.wait_for_selector(".approval")
    small.click("#tab-tasks")
    small.wait_for_selector("#tab-chat-needs:visible")
    assert small.inner_text("#tab-chat-needs") == "needs you"
    assert small.inner_text("li.task > .head .badge[data-status=needs]") == "Needs you"
    shot(small, "demo-approval-phone-tasks")
    phone.close()
    page.click(".approval button.approve")
    page.wait_for_selector(".turn[data-status=completed]", timeout=30_000)
    reply = page.locator(".turn .bubble.assistant").last
    reply.locator("table").wait_for()
    reply.locator("code.hljs").first.wait_for()
    assert page.locator(".subagent[data-status=completed]").count() == 2
    assert page.locator("li.task .badge[data-status=needs]").count() == 0
    shot(page, "demo-done")
    ctx.close()


def test_a_stopped_reply_says_the_next_one_knows(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, "stop", TETHER_HEARTBEAT_S="0.3"
    )
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    control(fake_llm, tokens_per_s=15)
    send(page, "words 300")
    page.wait_for_selector(".turn .bubble.assistant.streaming")
    turn = newest_turn(api, sid)
    # Esc answers an open question "no" (delete the session? cancel the task?): it does not
    # also stop the reply.
    page.click("#delete")
    page.keyboard.press("Escape")
    page.wait_for_selector("#delete-confirm", state="hidden")
    page.click(f'li.task[data-task="{turn}"] > .head button.danger')
    page.keyboard.press("Escape")
    page.wait_for_selector(f'li.task[data-task="{turn}"] .confirm', state="hidden")
    assert api.task(turn)["status"] == "running"
    page.click("#stop")
    page.wait_for_selector(".turn[data-status=cancelled] .note-ended")
    assert "next reply is told it was stopped" in page.inner_text(".turn .note-ended")
    assert page.inner_text(".turn .again") == "Retry"
    ctx.close()


def test_an_approval_on_another_branch_is_found_and_images_are_links(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, "away", TETHER_HEARTBEAT_S="0.3"
    )
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    send(page, "write away.txt: kept")
    page.wait_for_selector(".approval button.approve")
    first = newest_turn(api, sid)
    # An edit sent while the first version waits for an answer: it queues behind it, and says
    # where that is.
    page.click(f'.turn[data-task="{first}"] .user-actions button:text-is("Edit")')
    page.fill("form.edit textarea", "words 3")
    page.press("form.edit textarea", "Enter")
    second = wait_until(lambda: (n := newest_turn(api, sid)) != first and n)
    note = page.locator(f'.turn[data-task="{second}"] .note-waiting')
    note.locator("text=needs your answer").wait_for()
    assert page.locator(".approval").count() == 0  # on the other version
    # "1 approval needs you" goes to it, on its version, Approve focused.
    page.click("#needs-you")
    page.wait_for_selector(".approval button.approve:focus")
    assert shown(page) == [first]
    page.click(".approval button.approve")
    api.wait_status(second, "completed")
    assert api.task(first)["status"] == "completed"
    # A reply's image is a link to it, never fetched.
    send(page, "echo: look ![a cat](http://127.0.0.1:9/cat.png)")
    link = page.locator("a.img-link", has_text="Image: a cat")
    link.wait_for()
    assert link.get_attribute("href") == "http://127.0.0.1:9/cat.png"
    assert page.locator("#conversation img").count() == 0
    ctx.close()
