"""The chat on a long conversation (issue 25): 2,000 messages with code blocks, opened in
Chromium, then a new reply streamed into it.

    PYTHONPATH=. .venv/bin/python -m benchmarks --runs 1 --only chat
    (TETHER_BENCH_CHAT_TURNS=200 for a shorter run)

The conversation is made through the real server and the local model server: each of its
1,000 turns is a message with a Python code block and a reply that repeats it (`echo:`).
Measured in the page:
- open → usable: from the navigation's start to the first frame in which the stream is
  live, the newest reply is drawn at the bottom of the view (follow mode) and its code is
  highlighted;
- streaming: a reply of about 700 words with code blocks, streamed at 40 deltas a second:
  frames drawn per second while it streams (requestAnimationFrame), and the main thread's
  long tasks (over 50 ms) meanwhile.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.fake_llm import RunningFakeLLM
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.helpers.models import KEYS, agents_toml
from tests.helpers.server import SECRET, Server, free_port, wait_until

CODE = '''```python
def fib(n: int) -> int:
    """The n-th Fibonacci number, iteratively."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


print([fib(i) for i in range({n})])
```'''


def _message(n: int) -> str:
    return f"echo: Turn {n}: here is a function, and what it prints.\n\n{CODE.format(n=n % 40)}\n\nThat is turn {n}."


def _long_reply() -> str:
    words = " ".join(f"word{i}" for i in range(120))
    block = CODE.format(n=25)
    return "echo: " + "\n\n".join(f"Part {p}: {words}\n\n{block}" for p in range(5))


# In the page: the moment the conversation is usable, and frames and long tasks.
PROBE = """
window.__long = []; window.__frames = 0; window.__counting = false;
new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push({start: e.startTime, ms: e.duration}); })
  .observe({ type: "longtask", buffered: true });
const tick = () => { if (window.__counting) window.__frames++; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
// Checked once a frame (a MutationObserver's check would force a layout in the middle of
// every batch of changes, and slow down what it measures).
const check = () => {
  const c = document.getElementById("conversation");
  const turns = c ? c.querySelectorAll(":scope > .turn") : [];
  const last = turns[turns.length - 1];
  if (document.querySelector("#conn[data-kind=live]") && last && last.dataset.status === "completed"
      && last.querySelector(".bubble.assistant code.hljs") && c.scrollHeight - c.scrollTop - c.clientHeight < 2) {
    window.__usable = performance.now();
    return;
  }
  requestAnimationFrame(check);
};
requestAnimationFrame(check);
"""


def long_conversation(tmp: Path, runs: int) -> dict[str, Any]:
    turns = int(os.environ.get("TETHER_BENCH_CHAT_TURNS", "1000"))
    from playwright.sync_api import sync_playwright

    fake = RunningFakeLLM(free_port()).start()
    d = tmp / f"chat-{time.time_ns()}"
    d.mkdir()
    agents = d / "agents.toml"
    agents.write_text(agents_toml(fake, approval=[]))
    server = Server(
        d / "data",
        env={
            "TETHER_AGENTS_FILE": str(agents),
            "TETHER_HEARTBEAT_S": "5",
            # 2,000 messages of one user, not one user's quotas
            "TETHER_MAX_QUEUED_TURNS": "0",
            "TETHER_MAX_STORAGE_BYTES_PER_USER": "0",
            **KEYS,
        },
    )
    server.start()
    out: dict[str, list[float]] = {}
    try:
        http = httpx.Client(
            base_url=server.url, timeout=60, headers={"x-web-bootstrap-secret": SECRET}
        )
        sid = http.post("/api/sessions", json={"title": "long conversation"}).json()["id"]
        t0 = time.monotonic()
        last = ""
        for n in range(turns):
            r = http.post(f"/api/sessions/{sid}/messages", json={"text": _message(n)})
            r.raise_for_status()
            last = r.json()["id"]
        wait_until(
            lambda: http.get(f"/api/tasks/{last}").json()["status"] == "completed",
            timeout=3600,
            interval=0.5,
        )
        made_s = time.monotonic() - t0
        events = http.get(f"/api/sessions/{sid}").json()["head_seq"]
        for _ in range(runs):
            with sync_playwright() as pw:
                exe = shutil.which("chromium")
                assert exe, "Debian's chromium is needed"
                browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.add_init_script(PROBE)
                page.goto(f"{server.url}/?session={sid}#secret={SECRET}")
                open_ms = wait_until(
                    lambda: page.evaluate("window.__usable"),  # noqa: B023 (called here)
                    timeout=60,
                    interval=0.05,
                )
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].startTime")
                drawn = page.evaluate("document.querySelectorAll('#conversation > .turn').length")
                nodes = page.evaluate("document.getElementsByTagName('*').length")
                # A new reply, streamed at 40 deltas a second.
                httpx.post(f"{fake.url}/_control", json={"tokens_per_s": 40}).raise_for_status()
                page.fill("#message", _long_reply())
                page.evaluate("window.__long = []; window.__frames = 0")
                page.press("#message", "Enter")
                page.wait_for_selector(
                    "#conversation > .turn:last-child .bubble.assistant.streaming", timeout=30_000
                )
                page.evaluate(
                    "window.__frames = 0; window.__counting = true; window.__t0 = performance.now(); window.__long = []"
                )
                page.wait_for_selector(
                    "#conversation > .turn:last-child[data-status=completed]", timeout=120_000
                )
                s = page.evaluate(
                    "({frames: window.__frames, ms: performance.now() - window.__t0, long: window.__long})"
                )
                httpx.post(f"{fake.url}/_control", json={"tokens_per_s": 0}).raise_for_status()
                browser.close()
            long = [x["ms"] for x in s["long"]]
            for k, v in {
                "chat_turns": turns,
                "chat_messages": 2 * turns,
                "chat_events": events,
                "chat_make_s": made_s,
                "chat_open_to_usable_s": (open_ms - nav) / 1000,
                "chat_turns_drawn": drawn,
                "chat_dom_nodes": nodes,
                "chat_stream_fps": s["frames"] / (s["ms"] / 1000),
                "chat_stream_s": s["ms"] / 1000,
                "chat_stream_long_tasks": len(long),
                "chat_stream_longest_task_ms": max(long) if long else 0.0,
            }.items():
                out.setdefault(k, []).append(float(v))
    finally:
        server.stop()
        fake.stop()
    return {k: statistics.median(v) for k, v in out.items()}
