"""The web app on a long session (issue 10): a batch of 10,000 items watched live in
Chromium, then the page reloaded on the finished session.

    PYTHONPATH=. .venv/bin/python -m benchmarks --runs 1 --only web
    (TETHER_BENCH_WEB_ITEMS=1000 for a shorter run)

Measured in the page: commit→screen latency of each timeline row (the event's server
timestamp to the animation frame after its row was inserted), main-thread long tasks
(PerformanceObserver "longtask"), DOM size; commit→arrival (the event's server
timestamp to the page's code receiving it from the stream), which parts the server's and
network's share from the page's; reload → live on the finished session (from the reload
to the first frame with the stream open and the tree drawn).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import CHROMIUM_ARGS
from tests.helpers.server import SECRET, wait_until

PROBE = """
window.__lat = []; window.__arr = []; window.__long = 0;
// Arrival: the stream's own event, as the page's code first sees it (after SSE parsing).
const dispatch = EventTarget.prototype.dispatchEvent;
EventTarget.prototype.dispatchEvent = function (e) {
  if (window.__measure && e.type === "events" && this.constructor.name === "SessionStream") { const now = Date.now(); for (const d of e.detail) window.__arr.push(now - d.ts * 1000); }
  return dispatch.call(this, e);
}; window.__longMax = 0; window.__measure = false;
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) { window.__long += e.duration; window.__longMax = Math.max(window.__longMax, e.duration); }
}).observe({ type: "longtask", buffered: true });
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((ms) => {
    if (!window.__measure) return;
    const ts = [];
    for (const m of ms) for (const n of m.addedNodes) {
      if (n.nodeType === 1 && n.matches("li.ev")) ts.push(Date.parse(n.querySelector("time").dateTime));
    }
    if (ts.length) requestAnimationFrame(() => { const now = Date.now(); for (const t of ts) window.__lat.push(now - t); });
  }).observe(document.getElementById("timeline"), { subtree: true, childList: true });
});
"""

# Reload → live, timed in the page: from the navigation's start to the first frame in which
# the stream is live and the root task shows completed. (Playwright's selector wait polls
# at growing intervals up to 500 ms, which would be most of what it measured.)
READY = """
document.addEventListener("DOMContentLoaded", () => {
  const ready = () => document.querySelector('#conn[data-kind=live]') && document.querySelector('li.task[data-task="%s"][data-status=completed]');
  const mo = new MutationObserver(() => {
    if (ready()) { mo.disconnect(); requestAnimationFrame(() => { window.__ready = performance.timeOrigin + performance.now(); }); }
  });
  mo.observe(document.body, { subtree: true, childList: true, attributes: true });
});
"""


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def long_session(tmp: Path, runs: int) -> dict[str, Any]:
    items = int(os.environ.get("TETHER_BENCH_WEB_ITEMS", "10000"))
    from playwright.sync_api import sync_playwright

    from benchmarks.__main__ import Bench

    out: dict[str, list[float]] = {}
    for _ in range(runs):
        b = Bench(tmp, TETHER_HEARTBEAT_S="5")
        try:
            sid = b.session()
            with sync_playwright() as pw:
                exe = shutil.which("chromium")
                assert exe, "Debian's chromium is needed"
                browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.add_init_script(PROBE)
                page.goto(
                    f"{b.server.url}/?session={sid}&frame_ms={os.environ.get('TETHER_BENCH_FRAME_MS', '40')}#secret={SECRET}"
                )
                page.wait_for_selector("#conn[data-kind=live]", timeout=30_000)
                page.evaluate("window.__long = 0; window.__measure = true")
                t0 = time.monotonic()
                root = b.start(
                    sid, "batch", {"items": list(range(items)), "delay_s": 0, "parallel": 16}
                )
                b.wait_done(root, timeout=3600)
                run_s = time.monotonic() - t0
                events = b.http.get(f"/api/sessions/{sid}").json()["head_seq"]
                # (wait_for_function with a string would break the page's CSP: poll.)
                wait_until(
                    lambda: page.evaluate("window.tether.timeline.events.at(-1)?.seq") == events,  # noqa: B023 (called here)
                    timeout=120,
                    interval=0.2,
                )
                live = page.evaluate(
                    "({lat: window.__lat, arr: window.__arr, long: window.__long, longMax: window.__longMax,"
                    " stats: window.tether.stats()})"
                )
                # Reload the finished session: time to live with the tree drawn.
                page.add_init_script(READY % root)
                t1 = time.time()
                page.reload()
                reload_s = (
                    wait_until(lambda: page.evaluate("window.__ready"), timeout=60, interval=0.05)  # noqa: B023
                    / 1000
                    - t1
                )
                after = page.evaluate("({long: window.__long, stats: window.tether.stats()})")
                browser.close()
            lat, arr = live["lat"], live["arr"]
            for k, v in {
                "web_items": items,
                "web_events": events,
                "web_run_s": run_s,
                "web_commit_to_arrival_p50_ms": _pct(arr, 50),
                "web_commit_to_arrival_p99_ms": _pct(arr, 99),
                "web_commit_to_screen_p50_ms": _pct(lat, 50),
                "web_commit_to_screen_p99_ms": _pct(lat, 99),
                "web_commit_to_screen_max_ms": max(lat) if lat else float("nan"),
                "web_rows_measured": len(lat),
                "web_main_thread_busy_s": live["long"] / 1000,
                "web_main_thread_busy_pct": 100 * live["long"] / 1000 / run_s,
                "web_longest_task_ms": live["longMax"],
                "web_dom_nodes_live": live["stats"]["nodes"],
                "web_timeline_rows": live["stats"]["rows"],
                "web_reload_to_live_s": reload_s,
                "web_reload_busy_ms": after["long"],
                "web_dom_nodes_after_reload": after["stats"]["nodes"],
                "web_events_loaded_after_reload": after["stats"]["events"],
            }.items():
                out.setdefault(k, []).append(float(v))
        finally:
            b.stop()
    return {k: statistics.median(v) for k, v in out.items()}
