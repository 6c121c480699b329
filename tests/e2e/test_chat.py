"""The chat UI in Chromium, against a real server and the local model server (both
providers' streaming wire formats): streamed replies, sub-agents, approvals, and what a
network cut, an expiring token, a kill -9 and a second browser do to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_web import WATCH, seen
from tests.helpers.models import control, messages_by_id, model_session, workspace_file
from tests.helpers.server import SECRET, Api, Server, wait_until


def open_chat(ctx: BrowserContext, server: Server, sid: str) -> Page:
    page = ctx.new_page()
    page.add_init_script(WATCH)
    page.goto(f"{server.url}/?session={sid}&poll_ms=300#secret={SECRET}")
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    page.wait_for_selector("#composer:not([hidden])")
    return page


def send(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    wait_until(lambda: page.input_value("#message") == "", what="the message to be sent")


def turn_ids(api: Api, sid: str) -> list[str]:
    return [
        e["task_id"]
        for e in api.all_events(sid)
        if e["type"] == "task.created" and e["parent_task_id"] is None
    ]


def shown_messages(page: Page) -> dict[str, str]:
    """Every assistant bubble on the page: message id -> the text it received."""
    return dict(
        page.eval_on_selector_all(
            ".bubble.assistant[data-message]",
            "els => els.map(e => [e.dataset.message, e.dataset.text ?? ''])",
        )
    )


def assert_page_shows_the_log(page: Page, api: Api, sid: str) -> None:
    """Each surviving message of the log is on the page once, with exactly its deltas."""
    events = api.all_events(sid)
    gone = {m for e in events if e["type"] == "message.superseded" for m in e["data"]["messageIds"]}
    want = {k: v for k, v in messages_by_id(events).items() if k not in gone}
    wait_until(lambda: shown_messages(page) == want, timeout=20, what="the page to show the log")
    ids = page.eval_on_selector_all(
        ".bubble.assistant[data-message]", "els => els.map(e => e.dataset.message)"
    )
    assert len(ids) == len(set(ids)), "a message is shown twice"


def chat_server(
    make_server: Any, fake: RunningFakeLLM, tmp_path: Path, **env: str
) -> tuple[Server, Api, str]:
    return model_session(make_server, fake, tmp_path, "chat", TETHER_HEARTBEAT_S="0.3", **env)


def test_chat_through_network_cuts_and_token_expiry(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(make_server, fake_llm, tmp_path, TETHER_ACCESS_TTL_S="3")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_chat(ctx, server, sid)
    assert page.is_hidden("#no-model") and page.is_visible("#composer")

    control(fake_llm, tokens_per_s=12)
    send(page, "words 70")
    page.wait_for_selector(".turn .bubble.assistant.streaming")
    for _ in range(2):  # the reply goes on on the server while the browser is cut off
        ctx.set_offline(True)
        page.wait_for_selector("#conn:not([data-kind=live])", timeout=15_000)
        page.wait_for_timeout(1500)
        ctx.set_offline(False)
        page.wait_for_selector("#conn[data-kind=live]", timeout=30_000)
    first = turn_ids(api, sid)[0]
    api.wait_status(first, "completed", timeout=60)
    page.wait_for_selector(f'.turn[data-task="{first}"][data-status="completed"]')

    control(fake_llm, tokens_per_s=40)
    send(page, "please delegate: alpha | beta")
    second = wait_until(lambda: len(ids := turn_ids(api, sid)) == 2 and ids[1])
    page.wait_for_selector(f'.turn[data-task="{second}"][data-status="completed"]', timeout=60_000)
    cards = page.locator(f'.turn[data-task="{second}"] .tool .subagent')
    assert cards.count() == 2
    assert cards.locator('.badge[data-status="completed"]').count() == 2
    shot(page, "chat-delegation")

    # Markdown is rendered; HTML a model writes is shown as text, never run.
    send(
        page,
        'echo: **bold** and `code` <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>',
    )
    third = wait_until(lambda: len(ids := turn_ids(api, sid)) == 3 and ids[2])
    page.wait_for_selector(f'.turn[data-task="{third}"][data-status="completed"]', timeout=30_000)
    bubble = page.locator(f'.turn[data-task="{third}"] .bubble.assistant')
    assert bubble.locator("strong").inner_text() == "bold"
    assert bubble.locator("code").inner_text() == "code"
    assert bubble.locator("img, script").count() == 0
    assert "<img src=x" in bubble.inner_text()
    assert page.evaluate("window.__xss") is None

    assert_page_shows_the_log(page, api, sid)
    assert not seen(page)["unauthorized"]
    ctx.close()


def test_a_reply_cut_by_kill_9_is_replaced_on_the_page(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(make_server, fake_llm, tmp_path)
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_chat(ctx, server, sid)
    control(fake_llm, tokens_per_s=25)
    send(page, "words 60")
    wait_until(
        lambda: any("w3" in t for t in shown_messages(page).values()), what="part of the reply"
    )
    server.kill()
    server.start()
    turn = turn_ids(api := Api(server.client()), sid)[0]
    api.wait_status(turn, "completed", timeout=60)
    page.wait_for_selector(f'.turn[data-task="{turn}"][data-status="completed"]', timeout=30_000)
    assert_page_shows_the_log(page, api, sid)
    assert page.locator(f'.turn[data-task="{turn}"] .bubble.assistant').count() == 1
    assert "cut off" in page.locator(f'.turn[data-task="{turn}"] .note-superseded').inner_text()
    ctx.close()


def test_an_approval_answered_from_a_second_browser_after_a_restart(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(make_server, fake_llm, tmp_path)
    first = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_chat(first, server, sid)
    send(page, "write notes.txt: hello from the browser")
    page.wait_for_selector(".approval button.approve")
    assert page.title().startswith("(needs you)")
    assert page.is_visible("#needs-you")
    page.wait_for_selector(".sessions .s-state[data-state=needs]")
    shot(page, "chat-approval")
    first.close()  # the browser is gone; the task waits on the server

    server.kill()
    server.start()
    api = Api(server.client())
    turn = turn_ids(api, sid)[0]
    assert api.task(turn)["status"] == "running"

    second = browser.new_context(viewport={"width": 390, "height": 844})  # another device
    page = open_chat(second, server, sid)
    page.wait_for_selector(".approval button.approve")
    page.fill(".approval input", "fine by me")
    page.click(".approval button.approve")
    page.wait_for_selector(".approval-done")
    assert "Approved" in page.inner_text(".approval-done")
    api.wait_status(turn, "completed", timeout=30)
    page.wait_for_selector(f'.turn[data-task="{turn}"][data-status="completed"]')
    assert workspace_file(Api(server.client()), sid, "notes.txt") == "hello from the browser"
    wait_until(lambda: not page.title().startswith("(needs you)"), what="the title to clear")
    assert page.is_hidden("#needs-you")
    shot(page, "chat-approved-phone")
    second.close()
