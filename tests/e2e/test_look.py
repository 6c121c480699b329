"""How the chat looks and reads (issue 25, its "look" half), in Chromium against a real
server and the local model server: wide code and tables scroll inside themselves, an
approval reads as what it will do, refusals are plain words, the first sign-in, the phone's
header and drawer, the task form's choices and words, dark mode, highlighting and copy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_chat import open_chat
from tests.e2e.test_product import AXE
from tests.e2e.test_web import open_app, setup
from tests.helpers.models import model_session, say
from tests.helpers.server import SECRET, Api, Server, wait_until

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
# An internal id (s_…, t_…, ap_…) in words meant for people.
INTERNAL_ID = re.compile(r"\b[a-z]{1,3}_[0-9a-f]{8,}")

WIDE_LINE = "total = " + " + ".join(f"value_{i}" for i in range(40))
CODE = 'def greet(name):\n    return f"Hello, {name}"\n\n' + WIDE_LINE
TABLE = (
    "| "
    + " | ".join(f"Column {i}" for i in range(14))
    + " |\n|"
    + "---|" * 14
    + "\n| "
    + " | ".join(f"value-{i}-quite-wide" for i in range(14))
    + " |"
)
RICH = f"Here is the code:\n\n```python\n{CODE}\n```\n\nAnd a table:\n\n{TABLE}\n\nThat is all."


def rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def contrast(a: str, b: str) -> float:
    def lum(c: tuple[float, float, float]) -> float:
        lin = [
            x / 255 / 12.92 if x / 255 <= 0.03928 else ((x / 255 + 0.055) / 1.055) ** 2.4 for x in c
        ]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(rgb(a)), lum(rgb(b))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def colours(page: Page, selector: str) -> tuple[str, str]:
    """The computed text colour and background colour of the first match."""
    return tuple(  # type: ignore[return-value]
        page.eval_on_selector(
            selector, "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
        )
    )


def serious_axe_violations(page: Page) -> list[Any]:
    """axe-core (served to the page by the test: the page's CSP allows only its own origin)."""
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci --prefix tests/e2e`"
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.route(
            "**/__axe__.js", lambda route: route.fulfill(path=AXE, content_type="text/javascript")
        )
        page.add_script_tag(url="/__axe__.js")
    return list(
        page.evaluate(
            "axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => ({ id: v.id, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')) })))"
        )
    )


def look_server(
    make_server: Any, fake: RunningFakeLLM, tmp_path: Path, **kw: Any
) -> tuple[Server, Api, str]:
    return model_session(make_server, fake, tmp_path, "look", TETHER_HEARTBEAT_S="0.3", **kw)


def finished_turns(api: Api, sid: str) -> list[str]:
    return [
        e["task_id"]
        for e in api.all_events(sid)
        if e["type"] == "task.status" and e["data"]["status"] == "completed"
    ]


def wait_reply(page: Page, text: str) -> Any:
    """The assistant bubble that received exactly `text`, once its reply has ended."""
    sel = ".bubble.assistant[data-message]:not(.streaming)"
    wait_until(
        lambda: text in page.eval_on_selector_all(sel, "els => els.map(e => e.dataset.text)"),
        what="the reply",
    )
    return page.locator(sel).filter(has=page.locator("pre, table, p")).last


OVERFLOW = """() => {
  const se = document.scrollingElement, c = document.getElementById('conversation');
  const cr = c.getBoundingClientRect();
  const pre = c.querySelector('.bubble pre'), table = c.querySelector('.bubble table');
  const wrap = table && table.parentElement, td = table && table.querySelector('td');
  const scrolls = (e) => !!e && e.scrollWidth > e.clientWidth + 2 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  return {
    page: se.scrollWidth - se.clientWidth,
    conversation: c.scrollWidth - c.clientWidth,
    outside: [...c.querySelectorAll('.bubble, .turn, .msg-actions')].filter((b) => {
      const r = b.getBoundingClientRect(); return r.width > 0 && (r.right > cr.right + 1 || r.left < cr.left - 1);
    }).length,
    pre: scrolls(pre), table: scrolls(wrap),
    border: td ? parseFloat(getComputedStyle(td).borderTopWidth) : 0,
  };
}"""


def test_1_wide_code_and_tables_scroll_inside_themselves_at_both_widths(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = look_server(make_server, fake_llm, tmp_path)
    say(api, sid, "echo: " + RICH)
    say(api, sid, "echo: A long word: " + "x" * 400)
    wait_until(lambda: len(finished_turns(api, sid)) == 2, what="both replies")
    for size in (DESKTOP, PHONE):
        ctx = browser.new_context(viewport=size)
        page = open_chat(ctx, server, sid)
        wait_reply(page, RICH)
        page.wait_for_selector(".bubble table")
        got = page.evaluate(OVERFLOW)
        assert got == {
            "page": 0,
            "conversation": 0,
            "outside": 0,
            "pre": True,
            "table": True,
            "border": 1,
        }, (size, got)
        ctx.close()


def test_5_an_approval_shows_what_the_tool_will_do_and_a_denial_is_not_green(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = look_server(
        make_server, fake_llm, tmp_path, approval=["write_file", "fetch"]
    )
    content = "def hello():\n    return 'hi'\n"
    say(api, sid, f"write notes/hello.py: {content}")
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    card = page.locator(".approval").first
    card.wait_for()
    # The file and its content, as code in the file's language: not JSON with `\n` in it.
    assert card.locator(".args-path").inner_text() == "notes/hello.py"
    assert card.locator(".code-lang").inner_text().lower() == "python"
    assert card.locator("pre code").inner_text() == content.rstrip("\n")
    card.locator("pre code .hljs-keyword").first.wait_for()
    assert "\\n" not in card.inner_text() and '"content"' not in card.inner_text()
    tool = page.locator(".turn .tool").first
    assert tool.inner_text().count("return 'hi'") == 1, "the arguments are shown twice"

    # An overwrite: the diff, its added and removed lines coloured apart.
    task = api.all_events(sid)[0]["task_id"]
    diff = "--- a/notes/hello.py\n+++ b/notes/hello.py\n@@ -1,2 +1,2 @@\n def hello():\n-    return 'hi'\n+    return 'hello'\n"
    page.evaluate(
        """([task, diff]) => window.tether.conversation.applyMany([{ seq: 1e9, task_id: task,
        type: 'approval.requested', data: { approvalId: 'ap_crafted', toolCallId: 'call_crafted',
        tool: 'write_file', args: { path: 'notes/hello.py', content: "def hello():\\n    return 'hello'\\n" }, diff } }])""",
        [task, diff],
    )
    crafted = page.locator(".approval[data-approval=ap_crafted]")
    assert crafted.locator(".diff .diff-add").inner_text() == "+    return 'hello'"
    assert crafted.locator(".diff .diff-del").inner_text() == "-    return 'hi'"
    add = rgb(colours(page, ".approval[data-approval=ap_crafted] .diff-add")[1])
    rem = rgb(colours(page, ".approval[data-approval=ap_crafted] .diff-del")[1])
    assert add[1] > add[0] and rem[0] > rem[1], (add, rem)  # green-ish and red-ish
    shot(page, "look-approval-desktop")

    # On a phone the note's placeholder is whole.
    phone_ctx = browser.new_context(viewport=PHONE)
    phone = open_chat(phone_ctx, server, sid)
    note = phone.locator(".approval:not([data-approval=ap_crafted]) input").first
    note.wait_for()
    fits = note.evaluate(
        """e => { const cs = getComputedStyle(e); const c = document.createElement('canvas').getContext('2d');
        c.font = cs.font; return c.measureText(e.placeholder).width <= e.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) + 0.5; }"""
    )
    assert fits, "the note's placeholder is cut"
    shot(phone, "look-approval-phone")
    phone_ctx.close()

    page.click(".approval:not([data-approval=ap_crafted]) button.approve")
    done = page.locator(".approval-done").first
    done.wait_for()
    assert done.inner_text().startswith("Approved")
    ok = rgb(colours(page, ".approval-done")[0])
    assert ok[1] > ok[0] + 40, ok  # approved: green

    wait_until(lambda: finished_turns(api, sid), what="the write to finish")
    # Another tool: its arguments as a list of names and values, strings as text.
    url = f"http://127.0.0.1:{fake_llm.port}/nothing-here"
    say(api, sid, f"fetch {url}")
    card = page.locator(".turn").nth(1).locator(".approval")
    card.wait_for()
    assert card.locator("dl.args-kv dt").all_inner_texts() == ["url"]
    assert card.locator("dl.args-kv dd").all_inner_texts() == [url]
    card.locator("button.deny").click()
    denied = page.locator(".turn").nth(1).locator(".approval-done")
    denied.wait_for()
    assert denied.inner_text().startswith("Denied")
    r, g, _ = rgb(colours(page, ".turn:nth-child(2) .approval-done")[0])
    assert g <= r + 10, (r, g)  # denied: red or neutral, never green
    ctx.close()


def test_6_the_delete_confirmation_is_readable_and_refusals_are_plain_words(
    browser: Browser, make_server: Any
) -> None:
    server, api, sid = setup(make_server, "busy")
    root = str(api.start(sid, "batch", {"items": list(range(40)), "delay_s": 1})["id"])
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_app(ctx, server, sid)
    page.wait_for_selector(f'li.task[data-task="{root}"][data-status="running"]')
    page.click("#delete")
    fg, bg = colours(page, "#delete-yes")
    assert contrast(fg, bg) >= 4.5, (fg, bg)
    page.click("#delete-yes")
    page.wait_for_selector("#delete-q:has-text('Not deleted')")
    words = page.inner_text("#delete-q")
    # One task as the tree shows it (the batch), not the batch and its running item.
    assert "has 1 unfinished task" in words and not INTERNAL_ID.search(words), words
    assert ".." not in words and words.endswith("."), words
    # What the server says when it refuses is plain words too: no ids in it.
    for r in (
        api.c.delete(f"/api/sessions/{sid}"),
        api.c.get("/api/sessions/s_0123456789abcdef0123"),
        api.c.get("/api/tasks/t_0123456789abcdef01234567"),
        api.c.post(
            f"/api/tasks/{root}/approvals/ap_0123456789abcdef01234567",
            json={"decision": "approve"},
        ),
    ):
        assert r.status_code in (404, 409), r.text
        assert not INTERNAL_ID.search(r.json()["detail"]), r.json()
    ctx.close()


def test_7_first_sign_in_lists_the_new_session_and_titles_it(
    browser: Browser, make_server: Any
) -> None:
    server = make_server(TETHER_HEARTBEAT_S="0.3")
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    page.goto(f"{server.url}/#secret={SECRET}")
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    sessions = Api(server.client()).c.get("/api/sessions").json()["sessions"]
    assert len(sessions) == 1
    page.wait_for_selector(f'#sessions li[data-session="{sessions[0]["id"]}"] a[aria-current=page]')
    assert page.locator("#sessions li").count() == 1
    assert page.inner_text("#session-title") == sessions[0]["title"] != ""
    assert page.is_visible("#session-title") and page.is_visible("#rename")
    ctx.close()


def test_10_phone_header_drawer_and_the_task_form(browser: Browser, make_server: Any) -> None:
    server, api, sid = setup(make_server, "phone")
    agents = {a["name"]: a for a in api.c.get("/api/agents").json()["agents"]}
    assert agents["item"]["internal"] is True and agents["batch"]["internal"] is False
    ctx = browser.new_context(viewport=PHONE, has_touch=True)
    page = open_app(ctx, server, sid)
    # The header is one row, and nothing in it spills out.
    bar = page.eval_on_selector(
        ".bar", "e => [e.getBoundingClientRect().height, e.scrollWidth - e.clientWidth]"
    )
    assert bar[0] <= 56 and bar[1] <= 0, bar
    # The drawer has a backdrop; a tap beside it closes it.
    page.click("#menu")
    page.wait_for_selector("#backdrop:visible")
    page.wait_for_selector("#sidebar a[aria-current=page]")
    page.touchscreen.tap(370, 500)
    page.wait_for_selector("#backdrop", state="hidden")
    assert page.get_attribute("#menu", "aria-expanded") == "false"
    assert page.evaluate("!document.body.classList.contains('drawer')")
    # The task form: internal agents are not offered; the item agent is a choice.
    page.click("#tab-tasks")
    if page.get_attribute("#advanced", "open") is None:
        page.click("#advanced > summary")
    offered = page.eval_on_selector_all("#agent option", "os => os.map(o => o.value)")
    assert "batch" in offered and "item" not in offered, offered
    page.select_option("#agent", "batch")
    choice = page.locator("#f-batch-item_agent")
    assert choice.evaluate("e => e.tagName") == "SELECT"
    names = choice.evaluate("e => [...e.options].map(o => o.value)")
    assert "item" in names and choice.input_value() == "item", names
    # Limits in plain words, here and from the server.
    page.fill("#f-batch-items", "one\ntwo")
    page.fill("#f-batch-parallel", "65")
    page.click("#start")
    assert page.inner_text('[data-field="parallel"] .field-error') == "At most 64."
    r = api.c.post(
        f"/api/sessions/{sid}/tasks",
        json={"agent": "batch", "input": {"items": [1], "parallel": 65, "item_agent": "nope"}},
    )
    assert r.status_code == 422
    msgs = {e["loc"][-1]: e["msg"] for e in r.json()["errors"]}
    assert msgs["parallel"] == "At most 64." and "nope" in msgs["item_agent"], msgs
    assert all("should be" not in m.lower() for m in msgs.values()), msgs
    ctx.close()


THEME_AT_FIRST_PAINT = """
window.__themeAtBody = "unseen";
new MutationObserver((ms, obs) => {
  if (document.body) { window.__themeAtBody = document.documentElement.dataset.theme ?? null; obs.disconnect(); }
}).observe(document, { childList: true, subtree: true });
"""


def pick_theme(page: Page, theme: str) -> None:
    """Choose a theme in the header (on a phone, in its ⋯ menu, closed again after)."""
    phone = page.is_visible("#more")
    if phone:
        page.click("#more")
    page.select_option("#theme", theme)
    if phone:
        page.keyboard.press("Escape")
        page.wait_for_selector("#theme", state="hidden")


def test_dark_mode_follows_the_system_is_remembered_and_both_themes_pass_axe(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = look_server(make_server, fake_llm, tmp_path)
    say(api, sid, "echo: " + RICH)
    wait_until(lambda: finished_turns(api, sid), what="the reply")
    say(api, sid, "write hello.py: print('hello')\n")
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        ctx: BrowserContext = browser.new_context(viewport=size, color_scheme="dark")
        page = open_chat(ctx, server, sid)
        page.add_init_script(THEME_AT_FIRST_PAINT)
        page.wait_for_selector(".approval")
        # (code is highlighted once it comes into view)
        page.locator(".bubble pre code").first.scroll_into_view_if_needed()
        page.wait_for_selector(".bubble pre code.hljs")
        # By default the page follows the system: dark here.
        assert page.get_attribute("html", "data-theme") == "dark"
        page.emulate_media(color_scheme="light")
        page.wait_for_selector("html[data-theme=light]")
        pick_theme(page, "dark")
        page.wait_for_selector("html[data-theme=dark]")
        dark_bg = colours(page, "body")[1]
        assert sum(rgb(dark_bg)) < 150, dark_bg
        # Remembered, and in place before the page is first drawn.
        page.reload()
        page.wait_for_selector("#conn[data-kind=live]")
        assert page.evaluate("window.__themeAtBody") == "dark"
        assert page.input_value("#theme") == "dark"
        page.wait_for_selector(".approval")
        # (code is highlighted once it comes into view)
        page.locator(".bubble pre code").first.scroll_into_view_if_needed()
        page.wait_for_selector(".bubble pre code.hljs")
        shot(page, f"look-{name}-dark")
        assert serious_axe_violations(page) == [], (name, "dark")
        pick_theme(page, "light")
        page.wait_for_selector("html[data-theme=light]")
        assert sum(rgb(colours(page, "body")[1])) > 600
        shot(page, f"look-{name}-light")
        assert serious_axe_violations(page) == [], (name, "light")
        pick_theme(page, "system")
        page.wait_for_selector("html[data-theme=light]")  # the system is light now
        ctx.close()


def test_code_is_highlighted_and_labelled_and_copy_copies_the_source(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = look_server(make_server, fake_llm, tmp_path)
    ctx = browser.new_context(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    page = open_chat(ctx, server, sid)
    say(api, sid, "echo: No code here, just *words*.")
    wait_reply(page, "No code here, just *words*.")
    loaded = (
        "performance.getEntriesByType('resource').some(e => e.name.endsWith('highlight.min.js'))"
    )
    assert not page.evaluate(loaded), "the highlighter loaded before any code was shown"
    say(api, sid, "echo: " + RICH)
    bubble = wait_reply(page, RICH)
    block = bubble.locator(".code-block").first
    assert block.locator(".code-lang").inner_text().lower() == "python"
    block.locator("code.hljs .hljs-keyword").first.wait_for()
    assert page.evaluate(loaded)
    # Copy a code block: the code, as written.
    block.locator("button.copy-code").click()
    wait_until(lambda: "Copied" in block.locator("button.copy-code").inner_text())
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    # Copy a message: its markdown source.
    copy = page.locator(".turn").nth(1).locator("button.copy-msg")
    assert "Copy" in (copy.get_attribute("aria-label") or copy.inner_text())
    copy.click()
    wait_until(lambda: "Copied" in copy.inner_text())
    assert page.evaluate("navigator.clipboard.readText()") == RICH
    ctx.close()
