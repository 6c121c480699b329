"""Search in the page (issue 30), in Chromium against a real server and the local model
server: Ctrl+K puts the cursor in the sidebar's search box, results come as you type with
the match marked, the keyboard chooses one, and the page opens that session on that
message (drawing older turns until it is there), marked for a moment. A message's markup
is shown as text in a snippet, never run. Screenshots at both widths, light and dark; no
serious axe-core violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_chat import open_chat
from tests.e2e.test_look import DESKTOP, PHONE, serious_axe_violations
from tests.helpers.models import model_session, say
from tests.helpers.server import Api, wait_until

TURNS = 24  # more than the 20 a conversation opens on: the one found is drawn on demand
XSS = "<img src=x onerror=window.__xss=1> zanzibar ferry times"


def searched(page: Page, q: str) -> None:
    page.keyboard.press("Control+k")
    wait_until(lambda: page.evaluate("document.activeElement.id") == "search", what="focus")
    page.keyboard.type(q)
    page.wait_for_selector("#search-results:not([hidden]) .search-hit")


def test_search_finds_a_message_and_opens_its_session_there(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, found_sid = model_session(
        make_server, fake_llm, tmp_path, title="Harbour notes", TETHER_MAX_QUEUED_TURNS="0"
    )
    turns = [say(api, found_sid, f"note {i}: the quay{i} is busy")["id"] for i in range(TURNS)]
    api.wait_status(turns[-1], "completed", timeout=120)
    other = Api(server.client()).session("Island trip")
    api.wait_status(say(api, other, XSS)["id"], "completed")

    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, other)
    searched(page, "quay3")  # (a word being typed is a prefix: quay3 only, of quay0..quay23)
    hits = page.locator("#search-results .search-hit")
    assert hits.count() == 1
    assert hits.first.locator(".search-title").inner_text() == "Harbour notes"
    assert hits.first.locator("mark").inner_text() == "quay3"
    assert page.get_attribute("#search", "aria-expanded") == "true"
    assert page.get_attribute("#search", "aria-activedescendant") == "search-hit-0"
    shot(page, "search-desktop-light")
    assert serious_axe_violations(page) == []

    page.keyboard.press("Enter")
    target = f'#conversation [data-task="{turns[3]}"]'
    wait_until(lambda: f"session={found_sid}" in page.evaluate("location.search"),
               what="the session found to open")  # fmt: skip
    page.wait_for_selector(f"{target}.found")
    assert page.evaluate(
        f"""(() => {{
            const el = document.querySelector('{target}'), box = document.querySelector('#conversation');
            const a = el.getBoundingClientRect(), b = box.getBoundingClientRect();
            return a.bottom > b.top && a.top < b.bottom;
        }})()"""
    ), "the message found is in view"
    assert page.get_attribute("#tab-chat", "aria-selected") == "true"

    # Arrows and Escape; a message's markup is text in its snippet.
    searched(page, "zanzibar")
    snippet = page.locator("#search-results .search-hit .search-snippet").first
    assert "<img src=x onerror=window.__xss=1>" in snippet.inner_text()
    assert page.locator("#search-results img").count() == 0
    assert page.evaluate("window.__xss") is None
    page.keyboard.press("Escape")
    assert page.is_hidden("#search-results")
    page.keyboard.press("Escape")
    assert page.input_value("#search") == ""

    # Nothing found says so; another user's words are never found (the API's tests hold it).
    page.keyboard.press("Control+k")
    page.keyboard.type("nowhere-to-be-found")
    wait_until(lambda: "Nothing found" in page.inner_text("#search-status"), what="no results")

    page.emulate_media(color_scheme="dark")
    page.select_option("#theme", "dark")
    page.fill("#search", "")
    searched(page, "qua")
    shot(page, "search-desktop-dark")
    assert serious_axe_violations(page) == []
    ctx.close()

    phone = browser.new_context(viewport=PHONE)
    page = open_chat(phone, server, other)
    searched(page, "busy")
    assert page.evaluate("document.body.classList.contains('drawer')")
    shot(page, "search-phone-light")
    assert serious_axe_violations(page) == []
    page.emulate_media(color_scheme="dark")  # the system's theme, as a first visit has it
    shot(page, "search-phone-dark")
    assert serious_axe_violations(page) == []
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    wait_until(lambda: f"session={found_sid}" in page.evaluate("location.search"),
               what="the session found to open")  # fmt: skip
    assert not page.evaluate("document.body.classList.contains('drawer')")
    phone.close()
