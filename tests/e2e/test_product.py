"""The web app as a new user meets it (issue 10): one test per defect found, in Chromium
against a real server, with time compressed by settings."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import Browser, Page

from tests.e2e.conftest import ROOT, shot
from tests.e2e.test_web import dom_seqs, open_app, setup
from tests.helpers.server import SECRET, Api, open_gate, wait_until

AXE = ROOT / "tests" / "e2e" / "node_modules" / "axe-core" / "axe.min.js"

TREE_IDS = """
window.__treeIds = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((ms) => {
    for (const m of ms) for (const n of m.addedNodes) {
      if (n.nodeType === 1 && n.matches("li.task")) window.__treeIds.push([location.search, n.dataset.task]);
    }
  }).observe(document.getElementById("tree"), { subtree: true, childList: true });
});
"""


def model_seqs(page: Page) -> list[int]:
    return list(page.evaluate("window.tether.timeline.seqs"))


def errors_of(page: Page) -> list[str]:
    errs: list[str] = []
    page.on("pageerror", lambda e: errs.append(str(e)))
    return errs


def test_1_switching_sessions_never_shows_the_other_sessions_tasks(
    browser: Browser, make_server: Any
) -> None:
    server, api, a = setup(make_server, "first")
    busy = str(api.start(a, "batch", {"items": list(range(30)), "delay_s": 1})["id"])
    ctx = browser.new_context()
    page = open_app(ctx, server, a, init=TREE_IDS)
    page.wait_for_selector(f'li.task[data-task="{busy}"][data-status="running"]')
    page.click("#new-session")
    # (page.url does not follow history.replaceState: ask the page.)
    wait_until(lambda: a not in page.evaluate("location.search"), what="the new session to open")
    b = re.search(r"session=(s_[0-9a-f]+)", page.evaluate("location.search")).group(1)  # type: ignore[union-attr]
    page.wait_for_selector("#conn[data-kind=live]")
    mine = str(api.start(b, "one_item", {"item": "mine"})["id"])
    page.wait_for_selector(f'li.task[data-task="{mine}"][data-status="completed"]')
    foreign = [tid for where, tid in page.evaluate("window.__treeIds") if b in where]
    assert foreign == [mine], foreign  # nothing of the first session, not even for a moment
    assert page.locator("li.task").count() == 1
    page.click(f'#sessions li[data-session="{a}"] a')
    page.wait_for_selector(f'li.task[data-task="{busy}"]')
    assert page.locator(f'li.task[data-task="{mine}"]').count() == 0
    ctx.close()


def test_2_sign_out_clears_the_page(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "signout")
    root = str(api.start(sid, "batch", {"items": list(range(10)), "delay_s": 1})["id"])
    ctx = browser.new_context()
    page = open_app(ctx, server, sid)
    errs = errors_of(page)
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="running"]')
    page.click("#signout")
    page.wait_for_selector("#signin-view:not([hidden])")
    assert page.is_hidden("#app-view")
    assert page.locator("li.task, li.ev, .turn, #sessions li").count() == 0
    assert page.locator("button.danger:visible").count() == 0
    assert page.text_content("#conn-text") == "Signed out"
    assert errs == []  # no BroadcastChannel (or any) error on the way out
    assert api.task(root)["status"] == "running"  # signing out cancels nothing
    ctx.close()


def test_3_timeline_follows_and_offers_a_jump_to_the_latest(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "follow")
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = open_app(ctx, server, sid)
    # Events every 0.2 s for as long as the test needs (up to 30 s), then all at once.
    inp = {"items": list(range(150)), "delay_s": 0.2, "item_agent": "gated_item"}
    root = str(api.start(sid, "batch", inp)["id"])
    # The timeline scrolls from its newest end (a column-reverse box): 0 is the bottom.
    at_end = "Math.abs(document.getElementById('timeline').scrollTop) < 40"
    # Following: the newest event is the last row and in view, batch rows and all.
    wait_until(lambda: len(model_seqs(page)) > 60, what="events to flow")
    wait_until(
        lambda: dom_seqs(page)[-1:] == model_seqs(page)[-1:] and page.evaluate(at_end),
        what="the newest row to be in view",
    )
    # Scrolled up: the view stays put and a pill counts what is new.
    page.evaluate(
        "(() => { const t = document.getElementById('timeline'); t.scrollTop = -t.scrollHeight; t.dispatchEvent(new Event('scroll')); })()"
    )
    last = dom_seqs(page)[-1]
    page.wait_for_selector(".pill:visible")
    wait_until(lambda: int(re.search(r"\((\d+) new\)", page.text_content(".pill")).group(1)) >= 5)  # type: ignore[union-attr]
    assert dom_seqs(page)[-1] == last
    assert page.get_attribute("#timeline", "data-follow") == "off"
    shot(page, "timeline-pill")
    page.click(".pill")
    wait_until(lambda: dom_seqs(page)[-1:] == model_seqs(page)[-1:] and page.evaluate(at_end))
    assert page.is_hidden(".pill")
    assert api.task(root)["status"] == "running"  # all of the above while events flowed
    open_gate(server)
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]', timeout=60_000)
    # After a reload the newest is in view, not the oldest.
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]")
    log = [e["seq"] for e in api.all_events(sid)]
    wait_until(lambda: dom_seqs(page)[-1:] == log[-1:] and page.evaluate(at_end))
    ctx.close()


def test_4_a_long_session_stays_small_on_the_page_and_loads_earlier_on_demand(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "long")
    n = 150
    root = str(
        api.start(sid, "batch", {"items": list(range(n)), "delay_s": 0, "parallel": 8})["id"]
    )
    ctx = browser.new_context()
    page = open_app(ctx, server, sid)
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]', timeout=120_000)
    log = [e["seq"] for e in api.all_events(sid)]
    wait_until(lambda: model_seqs(page) == log, what="every event, once, in order")
    stats = page.evaluate("window.tether.stats()")
    assert stats["rows"] == 60 and stats["tasks"] == n + 1, stats
    assert dom_seqs(page) == log[-stats["rows"] :]
    # The tree: a summary of the sub-tasks, a few of them shown, and all on demand.
    assert page.locator("li.task").count() <= 1 + 40
    assert f"{n} sub-tasks: {n} done." in page.text_content(".kids-summary")
    page.click(".kids-summary button")
    wait_until(lambda: page.locator("li.task").count() == 1 + n)
    # Reopened as a huge session (its tail only), earlier events load on demand, exactly.
    page.goto(f"{server.url}/?session={sid}&poll_ms=300&full_load=500")
    page.wait_for_selector("#conn[data-kind=live]")
    wait_until(lambda: model_seqs(page) == log[-1000:], what="the tail of the log")
    # Scrolling back adds the rows held in memory above the window, with no click.
    assert len(dom_seqs(page)) == 60
    page.hover("#timeline")
    page.mouse.wheel(0, -20_000)
    wait_until(lambda: len(dom_seqs(page)) > 60, what="rows added while scrolling back")
    for _ in range(6):  # the rest of memory, then a page from the server
        if len(model_seqs(page)) == 1200:
            break
        rows = len(dom_seqs(page))
        page.click(".earlier")
        wait_until(lambda: len(dom_seqs(page)) > rows, what="earlier rows")  # noqa: B023
    assert model_seqs(page) == log[-1200:]
    assert dom_seqs(page) == log[-1200:][-len(dom_seqs(page)) :]
    assert page.locator(f'li.task[data-task="{root}"][data-status="completed"]').count() == 1
    # Failed sub-tasks are always in view, however early in the batch they failed.
    items: list[Any] = list(range(60))
    for i in (2, 30, 57):
        items[i] = "fail"
    other = api.session("picky")
    picky = str(
        api.start(other, "batch", {"items": items, "delay_s": 0, "item_agent": "picky_item"})["id"]
    )
    page.goto(f"{server.url}/?session={other}&poll_ms=300")
    page.wait_for_selector(f'li.task[data-task="{picky}"][data-status="completed"]')
    box = page.locator(f'li.task[data-task="{picky}"]')
    wait_until(
        lambda: (
            "60 sub-tasks: 57 done, 3 failed."
            in (box.locator(".kids-summary").text_content() or "")
        ),
        what="the summary",
    )
    assert box.locator('li.task[data-status="failed"]').count() == 3
    assert box.locator("li.task").count() == 3 + 5  # the failed and the newest done
    ctx.close()


STATUSES = """
window.__statuses = {};
document.addEventListener("DOMContentLoaded", () => {
  const seen = () => {
    for (const li of document.querySelectorAll("li.task")) {
      const l = (window.__statuses[li.dataset.task] ??= []);
      if (l[l.length - 1] !== li.dataset.status) l.push(li.dataset.status);
    }
  };
  new MutationObserver(seen).observe(document.getElementById("tree"), { subtree: true, childList: true, attributes: true });
});
"""


def test_4_opening_reads_tree_and_tail_at_once_and_never_shows_a_task_older_than_it_is(
    browser: Browser, make_server: Any
) -> None:
    # The tree and the newest events are asked for at once. Here the tail is read while the
    # task runs and the tree (held back) after it finished: the page must show it finished
    # from its first frame, not running until the stream catches up.
    server, api, sid = setup(make_server, "race")
    # 6 s: long enough that the page's first reads land while it runs, on a loaded machine.
    root = str(api.start(sid, "batch", {"items": [1, 2, 3], "delay_s": 2})["id"])
    wait_until(lambda: api.task(root)["status"] == "running")
    held: list[Any] = []
    tails: list[str] = []
    ctx = browser.new_context()
    ctx.route(re.compile(r".*/tasks\?brief=true$"), lambda route: held.append(route))
    page = ctx.new_page()
    page.add_init_script(STATUSES)
    page.on(
        "requestfinished",
        lambda r: "events?before=" in r.url and tails.append(api.task(root)["status"]),
    )
    page.goto(f"{server.url}/?session={sid}&poll_ms=300#secret={SECRET}")
    # (Playwright delivers route and request callbacks while it is called: a call per poll.)
    wait_until(
        lambda: page.wait_for_timeout(20) or (held and tails),
        what="the tree asked for and the tail read",
    )
    assert tails[0] == "running", "the tail was not read while the task ran"
    wait_until(lambda: api.task(root)["status"] == "completed", timeout=30)
    held[0].continue_()
    page.wait_for_selector("#conn[data-kind=live]")
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]')
    assert page.evaluate("window.__statuses")[root] == ["completed"]
    log = [e["seq"] for e in api.all_events(sid)]
    wait_until(lambda: model_seqs(page) == log, what="every event, once, in order")
    for later in held[1:]:
        later.continue_()
    ctx.close()


def test_5_a_keyboard_user_can_cancel_while_the_task_updates(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "keyboard")
    root = str(api.start(sid, "batch", {"items": list(range(40)), "delay_s": 0.3})["id"])
    ctx = browser.new_context()
    page = open_app(ctx, server, sid)
    cancel = f'li.task[data-task="{root}"] > .head button.danger'
    page.wait_for_selector(cancel)
    page.focus(cancel)
    before = page.text_content(f'li.task[data-task="{root}"] > .head .progress-text')
    wait_until(
        lambda: page.text_content(f'li.task[data-task="{root}"] > .head .progress-text') != before,
        what="the task to move on while Cancel has focus",
    )
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    page.keyboard.press("Enter")  # asks first; focus on the safe answer
    assert page.evaluate("document.activeElement.textContent") == "Keep running"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    assert api.task(root)["status"] == "running"
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Yes, cancel"
    page.keyboard.press("Enter")
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="cancelled"]')
    assert api.task(root)["status"] == "cancelled"
    ctx.close()


def test_7_a_good_poll_retries_the_stream_now_and_retry_now_works(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "retry")
    ctx = browser.new_context()
    streams: list[float] = []
    ctx.on("request", lambda r: streams.append(time.monotonic()) if "/stream" in r.url else None)
    page = open_app(ctx, server, sid)
    # The page cannot reach the server from its kill until the unroute below, so the server
    # returns at one moment the test picks, however long its start takes.
    cut = f"{server.url}/**"

    def unreachable(route: Any) -> None:
        route.abort()

    ctx.route(cut, unreachable)
    server.kill()
    page.wait_for_selector("#conn[data-kind=unreachable]")
    server.start()
    # The server returns while the stream waits out a backoff of seconds: the first good
    # poll brings the stream back, not the timer.
    wait_until(
        lambda: page.evaluate("window.tether.conn().nextTryAt - Date.now()") > 1500,
        timeout=90,
        what="a backoff of seconds",
    )
    # "Retry now" tries at once, whatever the backoff says (a backoff of 4 s or more, so a
    # loaded machine's slow click is not taken for a wait).
    wait_until(
        lambda: page.evaluate("window.tether.conn().nextTryAt - Date.now()") > 4000,
        timeout=90,
        what="a backoff of seconds",
    )
    wait_for_backoff = page.evaluate("window.tether.conn().nextTryAt - Date.now()") / 1000
    n = len(streams)
    clicked = time.monotonic()
    page.click("#retry")
    # Playwright's sync API hands the test its request events only inside a Playwright call,
    # so the wait asks the page something each round (a bare sleep would never see one).
    wait_until(
        lambda: page.evaluate("1") and len(streams) > n,
        timeout=30,
        what="Retry now to try the stream",
    )
    assert streams[n] - clicked < wait_for_backoff, "Retry now waited for the backoff"
    wait_until(
        lambda: page.evaluate("window.tether.conn().nextTryAt - Date.now()") > 4000,
        timeout=90,
        what="a backoff of seconds",
    )
    due = page.evaluate("window.tether.conn().nextTryAt")
    ctx.unroute(cut, unreachable)
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    assert page.evaluate("Date.now()") < due, "the stream waited for its backoff"
    api = Api(server.client())
    root = str(api.start(sid, "one_item", {"item": "back"})["id"])
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]')
    ctx.close()


ANNOUNCED = """
window.__announced = [];
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("announce");
  new MutationObserver(() => { if (el.textContent) window.__announced.push(el.textContent); })
    .observe(el, { childList: true, characterData: true, subtree: true });
});
"""


def test_8_the_indicator_counts_from_the_last_event_and_announces_only_outcomes(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "indicator")
    ctx = browser.new_context()
    page = open_app(ctx, server, sid, init=ANNOUNCED)
    root = str(api.start(sid, "batch", {"items": ["a", "b"], "delay_s": 0.2})["id"])
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="completed"]')
    # Heartbeats arrive every 0.3 s; "last update" still counts from the last event.
    wait_until(lambda: page.text_content("#conn-sub") == "last update 5 s ago", timeout=15)
    assert page.text_content("#conn-text") == "Live"
    assert page.get_attribute("#conn", "aria-live") is None  # the ticking text is not read out
    assert page.evaluate("window.__announced") == ["Batch of 2 items finished."]
    failing = str(
        api.start(
            sid, "batch", {"items": ["fail"], "item_agent": "picky_item", "on_error": "fail"}
        )["id"]
    )
    page.wait_for_selector(f'li.task[data-task="{failing}"][data-status="failed"]')
    wait_until(lambda: len(page.evaluate("window.__announced")) == 2)
    assert page.evaluate("window.__announced")[1] == "Batch of 1 item failed."
    ctx.close()


def test_10_a_pasted_secret_link_signs_in_an_open_tab(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "hash")
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{server.url}/?session={sid}")
    page.wait_for_selector("#signin-view:not([hidden])")
    page.evaluate(f"location.hash = '#secret={SECRET}'")
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.is_hidden("#signin-view") and "secret" not in page.url
    ctx.close()


def test_11_a_form_from_the_schema_plain_events_names_results_and_sessions(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "product")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_app(ctx, server, sid)
    # A form built from the schema, and a limit in plain words under the field it is about.
    # (The chat comes first, with the demo model: the form is one click away.)
    assert page.get_attribute("#advanced", "open") is None
    page.click("#advanced > summary")
    assert page.text_content("label[for=f-batch-delay_s]") == "Delay (seconds)"
    assert (
        page.text_content("#agent-help")
        == "Process items one by one (or `parallel` at a time), each delegated to a sub-agent."
    )
    page.fill("#f-batch-items", "alpha\nbeta\ngamma")
    page.fill("#f-batch-delay_s", "1")  # long enough to try the delete while it runs
    page.fill("#f-batch-parallel", "100")
    page.click("#start")
    page.wait_for_selector("#f-batch-parallel[aria-invalid=true]")
    assert page.text_content(".field[data-field=parallel] .field-error") == "At most 64."
    assert page.evaluate("document.activeElement.id") == "f-batch-parallel"
    assert api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"] == []
    page.fill("#f-batch-parallel", "1")
    assert page.text_content(".field[data-field=parallel] .field-error") == ""
    page.click("#start")
    page.wait_for_selector(".sessions .s-state[data-state=running]")
    # Children named for what they do; delete refused while a task runs.
    page.wait_for_selector("li.task .name:text-is('Item 1: alpha')")
    page.click("#delete")
    page.click("#delete-yes")
    page.wait_for_selector("#delete-q:has-text('unfinished')")
    page.click("#delete-no")
    page.wait_for_selector(
        "li.task[data-status=completed] .name:text-is('Batch of 3 items')", timeout=30_000
    )
    page.wait_for_selector(".sessions .s-state[data-state=completed]")
    # Events in plain words with their time; the raw JSON one click away.
    row = page.locator("li.ev", has_text="Progress 1 of 3").first
    assert re.fullmatch(r"\d\d:\d\d:\d\d", row.locator("time").text_content() or "")
    assert row.locator(".who").text_content() == "Batch of 3 items"
    row.locator("button.raw").click()
    assert row.locator("button.raw").get_attribute("aria-expanded") == "true"
    assert '"type": "task.progress"' in row.locator("pre").text_content()
    # The result, as fields.
    page.click("li.task[data-status=completed] > details.result > summary")
    page.wait_for_selector("li.task > details.result dl")
    fields = page.locator("li.task > details.result dl").first.inner_text()
    assert re.search(r"succeeded\s+3", fields, re.I) and re.search(
        r"results\s+3 entries", fields, re.I
    )
    shot(page, "desktop-product")
    # Rename, then delete.
    page.click("#rename")
    page.fill("#rename-input", "Quarterly numbers")
    page.press("#rename-input", "Enter")
    page.wait_for_selector(
        f'#sessions li[data-session="{sid}"] .s-title:text-is("Quarterly numbers")'
    )
    assert api.c.get(f"/api/sessions/{sid}").json()["title"] == "Quarterly numbers"
    page.click("#delete")
    page.click("#delete-yes")
    wait_until(lambda: api.c.get(f"/api/sessions/{sid}").status_code == 404)
    page.wait_for_selector("#conn[data-kind=live]")
    assert page.locator(f'#sessions li[data-session="{sid}"]').count() == 0
    ctx.close()


def test_12_phone_layout_input_kept_and_accessibility(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "phone-product")
    api.start(sid, "batch", {"items": ["one", "two"], "delay_s": 0})
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = open_app(ctx, server, sid)
    # One screen: no page scroll, the panel in view from the top, one panel at a time.
    assert page.evaluate("document.scrollingElement.scrollHeight <= innerHeight")
    assert page.evaluate("document.getElementById('main').getBoundingClientRect().top") < 130
    assert page.is_visible("#composer") and page.is_hidden("#panel-timeline")
    page.click("#tab-tasks")
    page.wait_for_selector("li.task[data-status=completed]")
    assert page.is_hidden("#panel-chat")
    # What was typed survives a reload.
    page.click("#advanced > summary")
    page.fill("#f-batch-items", "kept\nacross reloads")
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]")
    page.click("#advanced > summary")
    assert page.input_value("#f-batch-items") == "kept\nacross reloads"
    shot(page, "phone-tasks")
    page.click("#tab-timeline")
    page.wait_for_selector("li.ev")
    shot(page, "phone-timeline")
    page.click("#menu")
    page.wait_for_selector("#sidebar a[aria-current=page]")
    shot(page, "phone-sessions")
    page.keyboard.press("Escape")
    assert_accessible(page)
    ctx.close()
    # And at desktop width, with every panel showing.
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_app(ctx, server, sid)
    page.wait_for_selector("li.task[data-status=completed]")
    page.wait_for_selector("li.ev")
    shot(page, "desktop")
    assert_accessible(page)
    ctx.close()


def assert_accessible(page: Page) -> None:
    """axe-core (from npm, served to the page by this test: the page's CSP allows only its
    own origin) finds nothing serious or critical, contrast included."""
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci --prefix tests/e2e` (./dev test does)"
    page.route(
        "**/__axe__.js", lambda route: route.fulfill(path=AXE, content_type="text/javascript")
    )
    page.add_script_tag(url="/__axe__.js")
    found = page.evaluate(
        "axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => ({ id: v.id, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')) })))"
    )
    assert found == [], found
