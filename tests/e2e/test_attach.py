"""Attachments in Chromium (attachments.js), against a real server and the local model server:
a file picked with Attach, one dropped on the composer and one pasted become chips, one too large and
one of a refused type are refused in the composer before any upload, a chip can be removed;
sent, the files show under the message (the image as a thumbnail), the model is sent them,
and a reload shows the same."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import shot
from tests.e2e.test_chat import chat_server, open_chat
from tests.e2e.test_look import DESKTOP, PHONE, pick_theme, serious_axe_violations
from tests.helpers.server import wait_until
from tests.test_attachments import png

DROP = """([name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  return dt;
}"""


def drop(page: Page, name: str, data: bytes, type: str = "") -> None:
    """Drop a file on the composer, as a person dragging it from their desktop does."""
    dt = page.evaluate_handle(DROP, [name, type, base64.b64encode(data).decode()])
    page.dispatch_event("#composer", "dragover", {"dataTransfer": dt})
    page.dispatch_event("#composer", "drop", {"dataTransfer": dt})


def paste(page: Page, name: str, data: bytes) -> None:
    """Paste a file into the message box (a screenshot copied to the clipboard, say)."""
    dt = page.evaluate_handle(DROP, [name, "", base64.b64encode(data).decode()])
    page.eval_on_selector(
        "#message",
        "(box, dt) => box.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }))",
        dt,
    )


def chips(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        ".attach-tray .attach-chip", "els => els.map(e => e.innerText.replace(/\\s+/g, ' '))"
    )


def test_files_are_picked_dropped_refused_sent_and_shown(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = chat_server(
        make_server, fake_llm, tmp_path, TETHER_MAX_ATTACHMENT_BYTES="2000"
    )
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    assert page.is_hidden(".attach-tray")

    # Picked with the Attach button's file picker, and dropped on the composer.
    with page.expect_file_chooser() as chooser:
        page.click("button.attach-btn")
    chooser.value.set_files(
        files=[{"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Plan\nship it\n"}]
    )
    wait_until(lambda: len(chips(page)) == 1, what="the picked file's chip")
    drop(page, "dot.png", png())
    wait_until(lambda: len(chips(page)) == 2, what="the dropped file's chip")
    assert chips(page) == ["notes.md 15 B ✕", "dot.png 73 B ✕"]

    # Refused in the composer, before any upload: too large, and not a type it takes.
    drop(page, "big.txt", b"x" * 3000, "text/plain")
    wait_until(lambda: "big.txt" in page.inner_text("#composer-error"), what="the refusal")
    assert "big.txt is 3 KB, and a file may be 2 KB at most" in page.inner_text("#composer-error")
    drop(page, "tool.exe", b"MZ\x90\x00\x03\x00\x00\x00" * 8, "image/png")
    wait_until(lambda: "tool.exe" in page.inner_text("#composer-error"), what="the refusal")
    assert "tool.exe is not a type this server takes" in page.inner_text("#composer-error")
    # Pasted into the message box; and a chip can be taken back.
    paste(page, "extra.txt", b"not this one")
    wait_until(lambda: len(chips(page)) == 3, what="a third chip")
    page.click("button[aria-label='Remove extra.txt']")
    wait_until(lambda: len(chips(page)) == 2, what="the chip removed")
    assert api.c.get(f"/api/sessions/{sid}/files").json()["files"] == []  # nothing sent yet

    page.fill("#message", "what is in these?")
    page.press("#message", "Enter")
    wait_until(lambda: page.is_hidden(".attach-tray"), what="the chips to go with the message")
    assert page.input_value("#message") == ""
    names = sorted(
        f["path"].rsplit("/", 1)[-1]
        for f in api.c.get(f"/api/sessions/{sid}/files").json()["files"]
    )
    assert names == ["dot.png", "notes.md"]

    def shown_under_message() -> None:
        page.wait_for_selector(".user-msg .attached img.attached-thumb[src^='data:image/png']")
        files = page.eval_on_selector_all(
            ".user-msg .attached .attached-file",
            "els => els.map(e => [e.download, e.querySelector('.attach-size').textContent])",
        )
        assert files == [["notes.md", "15 B"], ["dot.png", "73 B"]]

    shown_under_message()
    # The model was sent both: the text inline, the image as an image.
    page.wait_for_selector(".bubble.assistant[data-message]:not(.streaming)")
    wait_until(lambda: "Reply" in page.inner_text(".bubble.assistant"), what="the reply")
    content = fake_llm.fake.brain.requests[-1]["body"]["messages"][-1]["content"]
    assert any(b["type"] == "image" for b in content)
    assert any("ship it" in b.get("text", "") for b in content)

    # A download is the file itself.
    with page.expect_download() as download:
        page.click(".attached-file[download='notes.md']")
    assert Path(download.value.path()).read_bytes() == b"# Plan\nship it\n"

    page.reload()
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    shown_under_message()

    # How it looks, with chips waiting in the composer too, at both widths and themes.
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        drop(page, "draft-notes.txt", b"x" * 1500)
        wait_until(lambda: len(chips(page)) == 1, what="a chip")
        for theme in ("light", "dark"):
            pick_theme(page, theme)
            page.wait_for_selector(f"html[data-theme={theme}]")
            shot(page, f"attach-{name}-{theme}")
            assert serious_axe_violations(page) == [], (name, theme)
        page.click("button[aria-label='Remove draft-notes.txt']")
    ctx.close()


def test_files_alone_are_sent_with_enter_or_send_and_answered(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """No text, only a file: Enter sends it (the box is not required then), and so does the
    Send button; the message shows its file with no empty bubble, and the reply comes."""
    server, api, sid = chat_server(make_server, fake_llm, tmp_path)
    ctx = browser.new_context(viewport=DESKTOP)
    page = open_chat(ctx, server, sid)
    assert page.eval_on_selector("#message", "box => box.required")  # nothing to send yet

    drop(page, "heron.txt", b"the code word is heron", "text/plain")
    wait_until(lambda: len(chips(page)) == 1, what="the dropped file's chip")
    assert not page.eval_on_selector("#message", "box => box.required")
    assert "send the files" in (page.get_attribute("#message", "placeholder") or "")
    page.press("#message", "Enter")
    wait_until(lambda: page.is_hidden(".attach-tray"), what="the file to go with the message")
    page.wait_for_selector(".turn .bubble.assistant[data-message]:not(.streaming)")
    wait_until(lambda: "Reply" in page.inner_text(".turn .bubble.assistant"), what="the reply")
    content = fake_llm.fake.brain.requests[-1]["body"]["messages"][-1]["content"]
    assert "the code word is heron" in "".join(b.get("text", "") for b in content)
    assert all(b["text"].strip() for b in content if b["type"] == "text")
    assert page.locator(".user-msg .bubble.user").count() == 0
    names = page.eval_on_selector_all(
        ".user-msg .attached .attached-file", "els => els.map(e => e.download)"
    )
    assert names == ["heron.txt"]
    assert page.inner_text("#composer-error") == ""
    assert page.eval_on_selector("#message", "box => box.required")  # the box is needed again

    # The Send button does the same, for a picked file.
    with page.expect_file_chooser() as chooser:
        page.click("button.attach-btn")
    chooser.value.set_files(
        files=[{"name": "plan.md", "mimeType": "text/markdown", "buffer": b"# Plan\n"}]
    )
    wait_until(lambda: len(chips(page)) == 1, what="the picked file's chip")
    page.click("#send")
    wait_until(lambda: page.locator(".turn").count() == 2, what="the second message")
    wait_until(
        lambda: "Reply" in page.locator(".turn .bubble.assistant").nth(1).inner_text(),
        what="the second reply",
    )
    turns = api.c.get(f"/api/sessions/{sid}/conversation").json()["turns"]
    assert [(t["text"], [a["name"] for a in t["attachments"]]) for t in turns] == [
        ("", ["heron.txt"]),
        ("", ["plan.md"]),
    ]

    # A reload draws them the same: each file, no empty bubble.
    page.reload()
    page.wait_for_selector("#conn[data-kind=live]", timeout=20_000)
    wait_until(lambda: page.locator(".user-msg .attached-file").count() == 2, what="the files")
    assert page.locator(".user-msg .bubble.user").count() == 0
    shot(page, "attach-files-alone")
    ctx.close()
