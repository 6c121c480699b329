"""Share a session from the page: the owner makes a link, someone else opens it in another
browser and follows the conversation live, read-only, through a reload; the owner revokes
it and the viewer is told. Export downloads from the header. Chromium against a real
server and the local model server; screenshots at both widths, light and dark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_behave import words_shown
from tests.e2e.test_chat import open_chat
from tests.e2e.test_product import assert_accessible
from tests.helpers.models import control, model_session, say
from tests.helpers.server import wait_until

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def open_link(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)


def test_a_shared_link_shows_the_session_live_read_only_until_revoked(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, title="Weekend plans", approval=[]
    )
    api.wait_status(say(api, sid, "hello there")["id"], "completed")

    owner_ctx = browser.new_context(viewport=DESKTOP)
    owner = open_chat(owner_ctx, server, sid)
    owner.click("#share")
    owner.select_option("#share-expiry", label="In 7 days")
    owner.fill("#share-label", "for Ann")
    owner.click("#share-dialog button[type=submit]")
    owner.wait_for_selector("#share-list li")
    url = owner.input_value("#share-url")
    assert "#share=tsh_" in url
    assert "for Ann" in owner.inner_text("#share-list") and "expires" in owner.inner_text(
        "#share-list"
    )
    shot(owner, "share-dialog-desktop-light")
    assert_accessible(owner)

    viewer_ctx = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    viewer = viewer_ctx.new_page()
    refused: list[str] = []  # the viewer asks for nothing the link may not read
    viewer.on("response", lambda r: refused.append(r.url) if r.status == 403 else None)
    open_link(viewer, url)
    assert "Read-only shared view" in viewer.inner_text("#shared-chip")
    wait_until(lambda: "hello there" in viewer.inner_text("#conversation"), what="the chat")
    assert viewer.inner_text("#session-title") == "Weekend plans"
    # Nothing that writes, and no other session.
    for hidden in ("#composer", "#sidebar", "#rename", "#delete", "#share", "#signout"):
        assert viewer.is_hidden(hidden), hidden
    assert viewer.locator("#conversation button:visible", has_text="Regenerate").count() == 0
    assert viewer.locator("#conversation button:visible", has_text="Edit").count() == 0

    # Live: a reply streams in as it is written, and goes on after a reload.
    control(fake_llm, tokens_per_s=25)
    turn = say(api, sid, "words 120")["id"]
    wait_until(lambda: words_shown(viewer, turn) > 10, what="the reply, live, at the viewer")
    viewer.reload()
    viewer.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    assert "#share=tsh_" in viewer.url  # the link stays in the address bar: a reload reads on
    wait_until(lambda: words_shown(viewer, turn) > 40, what="more of the reply after the reload")
    shot(viewer, "share-viewer-desktop-dark")
    assert_accessible(viewer)
    phone_ctx = browser.new_context(viewport=PHONE, color_scheme="light")
    phone = phone_ctx.new_page()
    open_link(phone, url)
    wait_until(lambda: "hello there" in phone.inner_text("#conversation"), what="the phone chat")
    shot(phone, "share-viewer-phone-light")
    control(fake_llm, tokens_per_s=0)
    api.wait_status(turn, "completed")
    assert refused == []

    # The owner revokes: the viewer is told at once, in place of the session.
    owner.click("#share-list li button.danger")
    owner.wait_for_selector("#share-list li", state="detached")
    viewer.wait_for_selector("#shared-ended", timeout=10_000)
    assert "revoked" in viewer.inner_text("#shared-ended")
    assert viewer.is_hidden("#app-view")
    shot(viewer, "share-revoked-desktop-dark")
    assert_accessible(viewer)
    phone.wait_for_selector("#shared-ended", timeout=10_000)
    shot(phone, "share-revoked-phone-light")
    for ctx in (owner_ctx, viewer_ctx, phone_ctx):
        ctx.close()


def test_export_downloads_from_the_header(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, title="Notes", approval=[])
    api.wait_status(say(api, sid, "hello there")["id"], "completed")
    ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = open_chat(ctx, server, sid)
    page.click("#export-menu summary")
    shot(page, "export-menu-desktop-light")
    with page.expect_download() as md:
        page.click("#export-menu button:has-text('Markdown')")
    assert md.value.suggested_filename.startswith("tether-notes-")
    text = Path(md.value.path()).read_text()
    assert text.startswith("# Notes\n") and "hello there" in text
    page.click("#export-menu summary")
    with page.expect_download() as js:
        page.click("#export-menu button:has-text('JSON')")
    doc = json.loads(Path(js.value.path()).read_text())
    assert doc["format"] == "tether.session" and doc["session"]["id"] == sid
    # On a phone, in the ⋯ menu.
    phone_ctx = browser.new_context(viewport=PHONE, accept_downloads=True, color_scheme="dark")
    phone = open_chat(phone_ctx, server, sid)
    phone.click("#more")
    shot(phone, "export-menu-phone-dark")
    with phone.expect_download() as md2:
        phone.click("#m-export-md")
    assert md2.value.suggested_filename.endswith(".md")
    phone.click("#more")
    phone.click("#m-share")
    phone.wait_for_selector("#share-dialog[open]")
    shot(phone, "share-dialog-phone-dark")
    assert phone.is_hidden("#bar-actions")  # the ⋯ menu closed behind the dialog
    assert_accessible(phone)
    ctx.close()
    phone_ctx.close()


def test_esc_closes_export_and_share_and_stops_no_reply(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, title="Esc", approval=[])
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    control(fake_llm, tokens_per_s=5)
    turn = say(api, sid, "words 200")["id"]
    api.wait_status(turn, "running")
    page.click("#export-menu summary")
    page.keyboard.press("Escape")
    assert page.is_hidden("#export-menu button:has-text('Markdown')")
    assert page.evaluate("document.activeElement.matches('#export-menu summary')")
    page.click("#share")
    page.wait_for_selector("#share-dialog[open]")
    page.focus("#share-dialog button:has-text('Close')")  # not a field: Esc is not text
    page.keyboard.press("Escape")
    page.wait_for_selector("#share-dialog", state="hidden")
    page.wait_for_timeout(500)
    assert api.task(turn)["status"] == "running"
    control(fake_llm, tokens_per_s=0)
    api.wait_status(turn, "completed")
    ctx.close()
