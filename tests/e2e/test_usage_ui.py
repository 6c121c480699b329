"""Usage and cost in the chat, in Chromium against a real server and the local model server:
each turn shows its tokens and cost under the reply (its sub-agents' calls included), the
header shows the session's total, both the server's numbers live and after a reload, and a
budget's refusal is shown in the chat in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_chat import open_chat, send
from tests.e2e.test_look import DESKTOP, PHONE, pick_theme, serious_axe_violations
from tests.helpers.server import Api, wait_until
from tests.test_usage import priced_server
from tether.usage import money


def line(t: dict[str, Any]) -> str:
    """A turn's line as the page words it (usage.js `describeUsage`)."""
    cost = (
        "" if t["cost"] is None else f" · {'≥ ' if t['unpriced_calls'] else ''}{money(t['cost'])}"
    )
    return f"{t['input_tokens']:,} tokens in · {t['output_tokens']:,} out{cost}"


def shown(page: Page) -> dict[str, str]:
    """turn id -> the usage line under it (turns without one left out)."""
    return dict(
        page.eval_on_selector_all(
            "#conversation > .turn > .usage-line",
            "els => els.map(e => [e.parentElement.dataset.task, e.textContent])",
        )
    )


def expect(page: Page, api: Api, sid: str, calls: int) -> dict[str, Any]:
    """Once the server counts `calls` calls, wait until the page shows its numbers: each
    turn's line and the total."""
    u = wait_until(
        lambda: (
            (u := api.c.get(f"/api/sessions/{sid}/usage").json())["total"]["calls"] == calls and u
        ),
        what=f"{calls} model calls",
    )
    want = {turn: line(t) for turn, t in u["turns"].items()}
    wait_until(lambda: shown(page) == want, timeout=20, what=f"the usage lines {want}")
    budget = f" of {money(u['budget'])} budget" if u["budget"] else " spent"
    header = money(u["total"]["cost"]) + budget
    wait_until(
        lambda: page.text_content("#session-usage") == header,
        what="the session's total in the header",
    )
    return dict(u)


def test_each_turn_shows_its_tokens_and_cost_and_the_header_the_sessions(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server = priced_server(make_server, fake_llm, tmp_path, TETHER_HEARTBEAT_S="0.3")
    api = Api(server.client())
    sid = api.session("usage")
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    assert page.is_hidden("#session-usage")  # nothing used yet: nothing shown

    send(page, "words 3")
    first = expect(page, api, sid, 1)
    assert len(first["turns"]) == 1
    send(page, "delegate: one | two")  # its line counts its sub-agents' calls too
    both = expect(page, api, sid, 5)
    assert sorted(t["calls"] for t in both["turns"].values()) == [1, 4]
    assert page.get_attribute("#session-usage", "title").startswith("This session: 5 model calls")
    # A reload shows the same numbers: nothing counted twice.
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]")
    expect(page, api, sid, 5)

    # A budget's refusal, in the chat, and the header says what is left of it.
    api.c.put(f"/api/sessions/{sid}/budget", json={"budget": 0.01}).raise_for_status()
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]")
    spent = both["total"]["cost"]
    expect(page, api, sid, 5)
    assert page.text_content("#session-usage") == f"{money(spent)} of $0.01 budget"
    send(page, "words 3")
    note = page.wait_for_selector(".turn .note-run-error:has-text('budget')")
    assert note is not None
    assert note.text_content() == (
        f"This session's budget of $0.01 is used up ({money(spent)} spent); the model "
        "was not called. Raise the budget to go on."
    )
    shot(page, "usage-desktop-light")
    assert serious_axe_violations(page) == []
    pick_theme(page, "dark")
    page.wait_for_selector("html[data-theme=dark]")
    shot(page, "usage-desktop-dark")
    assert serious_axe_violations(page) == []
    ctx.close()

    phone = browser.new_context(viewport=PHONE, color_scheme="dark")
    page = open_chat(phone, server, sid)
    expect(page, api, sid, 5)
    # The header's total on a phone: the amount, whole (never cut to "$0."), its words left out.
    assert page.inner_text("#session-usage") == money(spent)
    assert page.eval_on_selector("#session-usage", "e => e.scrollWidth <= e.clientWidth")
    page.locator("#conversation > .turn .usage-line").last.scroll_into_view_if_needed()
    shot(page, "usage-phone-dark")
    pick_theme(page, "light")
    page.wait_for_selector("html[data-theme=light]")
    shot(page, "usage-phone-light")
    assert serious_axe_violations(page) == []
    phone.close()
