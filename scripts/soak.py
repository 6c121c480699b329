"""Soak: one real-time task of N minutes (default 20) in Chromium, default server settings.

    .venv/bin/python -m scripts.soak [--minutes 20]

Reports reconnects, gaps, duplicates and auth errors, and writes artifacts/soak.json.
Not part of CI: it takes as long as it says.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM_ARGS
from tests.e2e.test_web import WATCH, dom_seqs
from tests.helpers.server import ROOT, SECRET, Api, Server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20)
    args = ap.parse_args()
    items = max(1, int(args.minutes * 60 / 10))  # one item every 10 s
    tmp = Path(tempfile.mkdtemp(prefix="tether-soak-"))
    # Default settings: heartbeat 15 s, access tokens of 10 min, polling every 2 s.
    server = Server(tmp / "data", env={"TETHER_HEARTBEAT_S": "15"})
    (tmp / "data").mkdir()
    server.start()
    api = Api(server.client(timeout=30))
    sid = api.session("soak")
    statuses: dict[int, int] = {}
    started = time.time()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        ctx = browser.new_context()
        page = ctx.new_page()
        page.add_init_script(WATCH)
        page.on("response", lambda r: statuses.__setitem__(r.status, statuses.get(r.status, 0) + 1))
        page.goto(f"{server.url}/?session={sid}#secret={SECRET}")
        page.wait_for_selector("#conn[data-kind=live]", timeout=30_000)
        root = api.start(sid, "batch", {"items": list(range(items)), "delay_s": 10})["id"]
        page.wait_for_selector(
            f'li.task[data-task="{root}"][data-status="completed"]',
            timeout=int((args.minutes * 60 + 300) * 1000),
        )
        time.sleep(2)
        log = [e["seq"] for e in api.all_events(sid)]
        shown = dom_seqs(page)
        seen = page.evaluate("window.__seen")
        report = {
            "minutes": round((time.time() - started) / 60, 2),
            "items": items,
            "events_in_log": len(log),
            "events_shown": len(shown),
            "gaps": sorted(set(log) - set(shown)),
            "duplicates": len(shown) - len(set(shown)),
            "reconnects": seen["kinds"].count("reconnecting") + seen["kinds"].count("offline"),
            "auth_errors": statuses.get(401, 0) + (1 if seen["unauthorized"] else 0),
            "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
            "task_status": api.task(root)["status"],
        }
        browser.close()
    server.stop()
    out = ROOT / "artifacts" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    width = max(len(k) for k in report)
    for k, v in report.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
