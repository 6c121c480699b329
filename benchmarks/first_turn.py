"""The first model turn after a start: how long the server stops answering while the model
layer (pydantic-ai and a provider's SDK, seconds of imports) loads.

    PYTHONPATH=. .venv/bin/python -m benchmarks.first_turn [--runs 3]

A real server with a model agent on the local model server; /healthz is asked every 5 ms
while the first message's turn runs, and the slowest answer is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import KEYS, agents_toml
from tests.helpers.server import Server, free_port, wait_until


def first_turn_stall_ms() -> float:
    fake = RunningFakeLLM(free_port()).start()
    tmp = Path(tempfile.mkdtemp())
    (tmp / "agents.toml").write_text(agents_toml(fake))
    srv = Server(tmp / "data", env={"TETHER_AGENTS_FILE": str(tmp / "agents.toml"), **KEYS})
    srv.start()
    worst = 0.0
    stop = threading.Event()

    def poll() -> None:
        nonlocal worst
        with httpx.Client(timeout=30) as h:
            while not stop.is_set():
                t = time.perf_counter()
                h.get(srv.url + "/healthz")
                worst = max(worst, time.perf_counter() - t)
                stop.wait(0.005)

    try:
        c = srv.client()
        sid = c.post("/api/sessions", json={"title": "first turn"}).json()["id"]
        poller = threading.Thread(target=poll)
        poller.start()
        tid = c.post(f"/api/sessions/{sid}/messages", json={"text": "hello words 3"}).json()["id"]
        wait_until(
            lambda: c.get(f"/api/tasks/{tid}").json()["status"] in ("completed", "failed"),
            what="the first turn",
        )
        stop.set()
        poller.join()
        assert c.get(f"/api/tasks/{tid}").json()["status"] == "completed"
    finally:
        stop.set()
        srv.stop()
        fake.stop()
    return worst * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    runs = [first_turn_stall_ms() for _ in range(ap.parse_args().runs)]
    print("measure                        median    runs")
    print(
        f"first_turn_worst_healthz_ms  {statistics.median(runs):8.0f}    "
        + ", ".join(f"{r:.0f}" for r in runs)
    )


if __name__ == "__main__":
    main()
