"""The screenshots in docs/screenshots/, taken from a real server and Debian's Chromium.

    .venv/bin/python -m scripts.screenshots [--out docs/screenshots]

A first run with no key (the offline demo answers), at 1440x900 and 390x844, light and dark:
the demo waiting for an approval, its finished reply with a second version, the phone's
chat, and a batch of items running in the Tasks and Timeline panels.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.e2e.conftest import CHROMIUM_ARGS
from tests.helpers.server import ROOT, SECRET, Api, Server, wait_until

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def _page(ctx: BrowserContext, server: Server, sid: str, theme: str) -> Page:
    page = ctx.new_page()
    page.add_init_script(f"localStorage.setItem('tether.theme', '{theme}')")
    page.goto(f"{server.url}/?session={sid}#secret={SECRET}")
    page.wait_for_selector("#conn[data-kind=live]")
    return page


def _settled(page: Page) -> None:
    """Nothing streaming, every code block in view highlighted, no pill in flight."""
    page.wait_for_timeout(400)
    wait_until(
        lambda: page.locator("#conversation .bubble.streaming").count() == 0,
        what="the replies to be written",
    )


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tether-shots-") as tmp:
        server = Server(Path(tmp) / "data", env={"TETHER_DEMO_WORDS_PER_S": "400"})
        server.start()
        try:
            api = Api(server.client())
            exe = shutil.which("chromium")
            assert exe, "Debian's chromium is needed (apt-get install chromium)"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)

                def shot(page: Page, name: str) -> None:
                    path = out / f"{name}.png"
                    page.screenshot(path=str(path))
                    shots.append(path)

                # The demo, asking for an approval (desktop, light).
                sid = api.session("")
                ctx = browser.new_context(viewport=DESKTOP, color_scheme="light")
                page = _page(ctx, server, sid, "light")
                page.fill("#message", "Plan a weekend in Lisbon, and show me around")
                page.press("#message", "Enter")
                page.wait_for_selector(".approval button.approve", timeout=60_000)
                _settled(page)
                shot(page, "desktop-light-approval")
                page.click(".approval button.approve")
                page.wait_for_selector("#conversation > .turn[data-status=completed]")
                # A second version of the reply (desktop, dark).
                page.click("#conversation > .turn .again")
                page.wait_for_selector(".approval button.deny", timeout=60_000)
                page.click(".approval button.deny")
                wait_until(
                    lambda: "2 / 2" in page.inner_text("#conversation > .turn:last-child"),
                    what="the second version",
                )
                page.wait_for_selector("#conversation > .turn:last-child[data-status=completed]")
                ctx.close()
                ctx = browser.new_context(viewport=DESKTOP, color_scheme="dark")
                page = _page(ctx, server, sid, "dark")
                page.wait_for_selector("#conversation > .turn:last-child .bubble code.hljs")
                _settled(page)
                shot(page, "desktop-dark-reply")
                ctx.close()

                # The phone: the chat (light) and the same reply (dark).
                for theme in ("light", "dark"):
                    ctx = browser.new_context(viewport=PHONE, color_scheme=theme, has_touch=True)
                    page = _page(ctx, server, sid, theme)
                    page.click("#tab-chat")
                    _settled(page)
                    shot(page, f"phone-{theme}-chat")
                    ctx.close()

                # A batch of items, running: the tree and the timeline (desktop, light), and
                # the phone's Tasks tab (dark).
                batch = api.session("Quarterly numbers")
                api.start(
                    batch,
                    "batch",
                    {"items": [f"region {i}" for i in range(60)], "delay_s": 1.5, "parallel": 8},
                )
                ctx = browser.new_context(viewport=DESKTOP, color_scheme="light")
                page = _page(ctx, server, batch, "light")
                page.wait_for_selector("li.task .kids-summary")
                page.wait_for_timeout(2500)
                shot(page, "desktop-light-batch")
                ctx.close()
                ctx = browser.new_context(viewport=PHONE, color_scheme="dark", has_touch=True)
                page = _page(ctx, server, batch, "dark")
                page.click("#tab-tasks")
                page.wait_for_selector("li.task .kids-summary")
                shot(page, "phone-dark-tasks")
                page.click("#tab-timeline")
                page.wait_for_timeout(500)
                shot(page, "phone-dark-timeline")
                ctx.close()
                browser.close()
        finally:
            server.stop()
    return shots


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    for path in take(Path(args.out)):
        print(path)


if __name__ == "__main__":
    main()
