"""The deployment guide's nginx config, run with Debian's nginx in front of a real server:
the stream passes live (not buffered), heartbeats hold it open, a resume is exact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.proxy import nginx_in_front
from tests.helpers.server import SECRET, Api, Server, follow_resuming, sse_frames


@pytest.fixture
def proxied(make_server: Any, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    server = make_server(TETHER_HEARTBEAT_S="0.3", TETHER_TRUSTED_PROXIES='["127.0.0.1"]')
    with nginx_in_front(tmp_path, f"server 127.0.0.1:{server.port};") as url:
        yield server, url


def test_the_guides_nginx_passes_the_stream_live_and_resumes_exactly(
    proxied: tuple[Server, str],
) -> None:
    server, url = proxied
    c = httpx.Client(base_url=url, timeout=30, headers={"x-web-bootstrap-secret": SECRET})
    api = Api(c)
    sid = api.session("behind nginx")
    root = str(api.start(sid, "batch", {"items": list(range(6)), "delay_s": 0.4})["id"])
    got: list[tuple[float, dict[str, Any]]] = []
    beats = 0
    with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
        assert r.status_code == 200
        for f in sse_frames(r):
            if f.event == "heartbeat":
                beats += 1
            if f.event == "message":
                got.append((time.time(), f.data))
                if f.data["task_id"] == root and f.data["data"].get("status") == "completed":
                    break
    # Live: each event reached the client soon after its commit, not when a buffer filled
    # or the task ended (the batch takes ~2.4 s).
    lag = [at - e["ts"] for at, e in got]
    assert max(lag) < 1.0, max(lag)
    assert got[-1][0] - got[0][0] > 1.5
    assert beats >= 3  # heartbeats pass through too
    # A resume through the proxy from the middle gives the rest exactly once.
    log = api.all_events(sid)
    assert [e for _, e in got] == log
    mid = log[len(log) // 2]["seq"]
    rest: list[dict[str, Any]] = []
    with c.stream("GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(mid)}) as r:
        for f in sse_frames(r):
            if f.event == "message":
                rest.append(f.data)
            if len(rest) == len(log) - mid or f.event == "heartbeat":
                break
    assert rest == log[mid:]
    c.close()


def test_kill_9_of_the_process_serving_a_stream_resumes_it_exactly_through_nginx(
    make_server: Any, tmp_path: Path
) -> None:
    # Two processes on one Postgres behind nginx (b as the backup, so the stream is on a).
    # a is killed mid-task; the client reconnects through nginx, lands on b and resumes
    # from its last seq: every event once, in order, and the task completes (on b, if a
    # was running it: b takes it over once a's heartbeat is stale).
    with fresh_database() as db:
        env = shared_env(
            db, TETHER_HEARTBEAT_S="0.3", TETHER_WORKER_HEARTBEAT_S="0.2", TETHER_WORKER_STALE_S="1"
        )
        a = make_server(TETHER_EXECUTOR_ID="a", **env)
        b = make_server(TETHER_EXECUTOR_ID="b", **env)
        ups = f"server 127.0.0.1:{a.port} max_fails=1 fail_timeout=30s;\n    server 127.0.0.1:{b.port} backup;"
        with nginx_in_front(tmp_path, ups) as url:
            c = httpx.Client(base_url=url, timeout=10, headers={"x-web-bootstrap-secret": SECRET})
            api = Api(c)
            sid = api.session("failover")
            root = str(
                Api(b.client()).start(sid, "batch", {"items": list(range(8)), "delay_s": 0.4})["id"]
            )
            killed = False

            def kill_a_mid_stream(got: list[dict[str, Any]]) -> None:
                nonlocal killed
                if len(got) == 12 and not killed:
                    a.kill()  # the process serving this stream
                    killed = True

            got, connects = follow_resuming(c, sid, root, on_event=kill_a_mid_stream)
            log = api.all_events(sid)
            c.close()
    assert killed and connects >= 2
    assert got == log  # nothing lost, nothing twice, in order
