"""The deployment guide's nginx config, run with Debian's nginx in front of a real server:
the stream passes live (not buffered), heartbeats hold it open, a resume is exact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import ROOT, SECRET, Api, Server, free_port, sse_frames, wait_until


def nginx_binary() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not exe:
        why = "Debian's nginx is needed (./dev test installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return exe


def guide_config() -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    return re.search(r"```nginx\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


@contextmanager
def nginx_in_front(tmp_path: Path, upstreams: str) -> Iterator[str]:
    """Debian's nginx running the guide's config with `upstreams` as its server lines."""
    port = free_port()
    site = guide_config().replace("server 127.0.0.1:8765;", upstreams)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path}/body;\n"
        f"proxy_temp_path {tmp_path}/proxy;\nfastcgi_temp_path {tmp_path}/fcgi;\n"
        f"uwsgi_temp_path {tmp_path}/uwsgi;\nscgi_temp_path {tmp_path}/scgi;\n{site}\n}}\n"
    )
    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=20, what="nginx to proxy /healthz")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


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
    # from its last seq: every event once, in order, and the task (run by b) completes.
    with fresh_database() as db:
        env = shared_env(db, TETHER_HEARTBEAT_S="0.3")
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
            got: list[dict[str, Any]] = []
            connects, killed = 0, False
            deadline = time.monotonic() + 60
            while not (
                got and got[-1]["task_id"] == root and got[-1]["data"].get("status") == "completed"
            ):
                assert time.monotonic() < deadline, f"{len(got)} events, {connects} connects"
                headers = {"Last-Event-ID": str(got[-1]["seq"])} if got else {}
                try:
                    with c.stream("GET", f"/api/sessions/{sid}/stream", headers=headers) as r:
                        assert r.status_code == 200, r.read()
                        connects += 1
                        for f in sse_frames(r):
                            if f.event != "message":
                                continue
                            got.append(f.data)
                            if len(got) == 12 and not killed:
                                a.kill()  # the process serving this stream
                                killed = True
                            if (
                                f.data["task_id"] == root
                                and f.data["data"].get("status") == "completed"
                            ):
                                break
                except httpx.HTTPError:
                    pass  # the stream broke: reconnect with the last seq
            log = api.all_events(sid)
            c.close()
    assert killed and connects >= 2
    assert got == log  # nothing lost, nothing twice, in order
