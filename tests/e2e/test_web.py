"""The web app in Chromium against a real server, with time compressed by settings."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

from tests.e2e.conftest import shot
from tests.helpers.server import SECRET, Api, Server, open_gate, wait_until

WATCH = """
window.__seen = { unauthorized: false, kinds: [], texts: [] };
const record = () => {
  const c = document.getElementById("conn");
  if (!c) return;
  const k = c.dataset.kind, l = window.__seen.kinds;
  if (l[l.length - 1] !== k) l.push(k);
  const t = document.getElementById("conn-text").textContent, ts = window.__seen.texts;
  if (ts[ts.length - 1] !== t) ts.push(t);
};
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver(record).observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
  record();
});
setInterval(() => {
  if (document.body && /unauthori[sz]ed/i.test(document.body.innerText)) window.__seen.unauthorized = true;
}, 200);
"""


def setup(make_server: Any, title: str, **env: str) -> tuple[Server, Api, str]:
    """A server with time compressed (heartbeat 0.3 s), a client and a fresh session."""
    server = make_server(TETHER_HEARTBEAT_S="0.3", **env)
    api = Api(server.client())
    return server, api, api.session(title)


def open_app(
    ctx: BrowserContext, server: Server, sid: str, poll_ms: int = 300, init: str = ""
) -> Page:
    """A signed-in page on the session, live; `init` is more script run before the page's."""
    page = ctx.new_page()
    page.add_init_script(WATCH + init)
    page.goto(f"{server.url}/?session={sid}&poll_ms={poll_ms}#secret={SECRET}")
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    assert "secret" not in page.url  # the secret left the address bar
    return page


def dom_seqs(page: Page) -> list[int]:
    return list(page.eval_on_selector_all(".ev[data-seq]", "els => els.map(e => +e.dataset.seq)"))


def assert_timeline_is_the_log(page: Page, api: Api, sid: str) -> None:
    """The page holds every event of the log once, in order: its model all of them, and its
    rows (a window of the newest) a run of them, ascending."""
    log = [e["seq"] for e in api.all_events(sid)]
    wait_until(
        lambda: page.evaluate("window.tether.timeline.seqs") == log,
        timeout=20,
        what="the timeline to hold the whole log",
    )
    rows = dom_seqs(page)
    assert rows == log[len(log) - len(rows) :], "the rows are not the newest events in order"


def seen(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.__seen"))


def task_badge(page: Page, task_id: str) -> str:
    return str(page.get_attribute(f'li.task[data-task="{task_id}"]', "data-status"))


def start_long_task(api: Api, sid: str, seconds: int) -> str:
    """A batch of 2 s items that runs for up to `seconds`: it goes on for as long as the
    test needs, and finishes in a moment once the test calls `open_gate`."""
    inp = {"items": list(range(seconds // 2)), "delay_s": 2, "item_agent": "gated_item"}
    return str(api.start(sid, "batch", inp)["id"])


def test_network_cuts_reload_and_short_tokens(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "network", TETHER_ACCESS_TTL_S="3")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_app(ctx, server, sid)
    root = start_long_task(api, sid, 80)  # outlives two cuts and a reload
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="running"]')
    shot(page, "live")

    for cut in range(2):
        ctx.set_offline(True)
        page.wait_for_selector(
            "#conn[data-kind=reconnecting], #conn[data-kind=offline]", timeout=10_000
        )
        if cut == 0:
            shot(page, "reconnecting")
        time.sleep(3.5)  # longer than a token lives (3 s): the page returns with an expired one
        ctx.set_offline(False)
        page.wait_for_selector("#conn[data-kind=live]", timeout=30_000)

    before_reload = seen(page)
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    assert page.is_hidden("#signin-view")
    assert api.task(root)["status"] == "running"  # it ran through the cuts and the reload
    open_gate(server)
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]', timeout=120_000)
    shot(page, "completed")
    assert_timeline_is_the_log(page, api, sid)
    assert not before_reload["unauthorized"] and not seen(page)["unauthorized"]
    kinds = before_reload["kinds"]
    # Live, then "You're offline" (the browser knows it has no network) and Live again, twice.
    assert kinds[:3] == ["connecting", "live", "offline"], kinds
    assert kinds.count("live") >= 2 and kinds.count("offline") >= 2, kinds
    texts = " ".join(before_reload["texts"])
    assert "You're offline" in texts and "Server unreachable" not in texts
    ctx.close()


def test_server_killed_and_restarted_mid_task(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "restart", TETHER_ACCESS_TTL_S="3")
    ctx = browser.new_context()
    page = open_app(ctx, server, sid)
    root = start_long_task(api, sid, 80)  # outlives a kill and a restart
    page.wait_for_selector(f'li.task[data-task="{root}"] .progress-text')
    wait_until(lambda: len(api.task(root)["children"]) >= 3, timeout=30)
    server.kill()
    page.wait_for_selector("#conn[data-kind=unreachable]", timeout=10_000)
    assert page.text_content("#conn-text") == "Server unreachable"
    shot(page, "server-down")
    server.start()
    api = Api(server.client())
    page.wait_for_selector("#conn[data-kind=live]", timeout=40_000)
    assert api.task(root)["status"] == "running"  # it ran through the kill and the restart
    open_gate(server)
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]', timeout=120_000)
    assert api.task(root)["status"] == "completed"
    assert_timeline_is_the_log(page, api, sid)
    assert not seen(page)["unauthorized"]
    ctx.close()


def test_truthful_status_when_the_stream_is_blocked_or_the_server_is_gone(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "blocked")
    ctx = browser.new_context()
    page = open_app(ctx, server, sid)
    root = str(api.start(sid, "batch", {"items": list(range(40)), "delay_s": 1})["id"])
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="running"]')

    # Only the stream is blocked (a proxy that refuses it), from the next page load on:
    # polling shows the server's status, and the timeline fills from the events API.
    ctx.route(re.compile(r".*/stream(\?.*)?$"), lambda route: route.abort())
    page.reload()
    page.wait_for_selector(f'li.task[data-task="{root}"]')
    page.wait_for_selector("#conn[data-kind=reconnecting]", timeout=20_000)
    wait_until(lambda: "running" in page.text_content("#conn-sub"), timeout=20)
    first = max(dom_seqs(page))
    wait_until(
        lambda: max(dom_seqs(page)) > first + 3, timeout=20, what="the timeline to keep filling"
    )
    log = {e["seq"] for e in api.all_events(sid)}
    shown = dom_seqs(page)
    assert len(shown) == len(set(shown)) and set(shown) <= log
    assert page.text_content("#conn-text") == "Reconnecting"  # never "offline": REST answers
    assert page.is_hidden("#stale")
    shot(page, "stream-blocked-polling")

    # The server is gone for good: "Server unreachable", with the last status it gave and
    # when; the tree is marked as a picture from then.
    server.kill()
    page.wait_for_selector("#conn[data-kind=unreachable]", timeout=40_000)
    assert re.fullmatch(r"as of \d\d:\d\d · trying again", page.text_content("#conn-sub"))
    assert re.fullmatch(r"As of \d\d:\d\d", page.text_content("#stale"))
    assert page.get_attribute("#panel-tasks", "data-stale") is not None
    assert task_badge(page, root) == "running"  # not inferred from the socket's state
    shot(page, "offline")
    ctx.close()


def test_eight_tabs_of_one_session_stay_live(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "tabs")
    ctx = browser.new_context()
    streams: list[str] = []
    ctx.on("request", lambda r: streams.append(r.url) if "/stream" in r.url else None)
    pages = [open_app(ctx, server, sid) for _ in range(8)]
    root = str(api.start(sid, "batch", {"items": list(range(6)), "delay_s": 1})["id"])
    for p in pages:
        p.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]', timeout=60_000)
        assert p.get_attribute("#conn", "data-kind") == "live"
    for p in pages:
        assert_timeline_is_the_log(p, api, sid)
    assert len(streams) == 1  # one stream serves all eight tabs
    # Closing the tab that holds the stream (the first one opened took the lock) hands the
    # stream to another tab: one new stream request, and every other tab stays live.
    pages[0].close()
    second = str(api.start(sid, "one_item", {"item": "after"})["id"])
    for p in pages[1:]:
        p.wait_for_selector(
            f'li.task[data-task="{second}"][data-status="completed"]', timeout=30_000
        )
    assert len(streams) == 2
    shot(pages[1], "eight-tabs")
    ctx.close()


def test_phone_width_sign_in_form_and_cancel(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "phone")
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.goto(f"{server.url}/?session={sid}")
    page.wait_for_selector("#signin-view:not([hidden])")
    shot(page, "sign-in")
    page.fill("#secret", "wrong")
    page.press("#secret", "Enter")
    page.wait_for_selector("#signin-error:has-text('wrong bootstrap secret')")
    page.fill("#secret", SECRET)
    page.press("#secret", "Enter")
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Start a task with the keyboard, from the form built from the agent's schema.
    page.click("#tab-tasks")
    page.click("#advanced > summary")
    page.fill("#f-batch-items", "one\ntwo\nthree")
    page.fill("#f-batch-delay_s", "20")
    page.focus("#f-batch-on_error")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("li.task[data-status=running] button.danger")
    shot(page, "phone-running")
    page.click("li.task[data-status=running] > .head button.danger")
    page.click("li.task[data-status=running] > .head button:has-text('Yes, cancel')")
    page.wait_for_selector("li.task[data-status=cancelled]")
    roots = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"]
    assert roots[0]["status"] == "cancelled"
    assert [c["input"]["item"] for c in roots[0]["children"]] == ["one"]
    ctx.close()


NOTES = """
window.__notes = [];
const RealNotification = window.Notification;
window.Notification = class extends RealNotification {
  constructor(title, opts) { super(title, opts); window.__notes.push([title, opts?.tag]); }
};
"""


def test_a_task_ending_in_a_hidden_tab_badges_the_title(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "hidden")
    # Notifications allowed: the real constructor runs; the page's calls are recorded.
    ctx = browser.new_context(permissions=["notifications"])
    page = open_app(ctx, server, sid, init=NOTES)
    assert page.evaluate("Notification.permission") == "granted"
    assert page.locator("#notify").is_hidden()  # nothing to ask for
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true})"
    )
    root = str(api.start(sid, "one_item", {"item": "x", "delay_s": 0.5})["id"])
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]')
    wait_until(lambda: page.title() == "(1) Tether", timeout=5, what="the title badge")
    notes = page.evaluate("window.__notes")
    assert len(notes) == 1 and re.fullmatch(r"Tether: .+ finished", notes[0][0]), notes
    assert notes[0][1] == root  # one per task: a second tab's notice replaces it
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    wait_until(lambda: page.title() == "Tether", timeout=5, what="the badge to clear")
    ctx.close()
