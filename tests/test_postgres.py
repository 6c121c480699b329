"""Tether on Postgres: what differs from the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.pg import fresh_database
from tests.helpers.server import ROOT, SECRET, Api, free_port, sse_frames


def test_a_server_on_postgres_refuses_to_start_without_shared_secrets(tmp_path: Path) -> None:
    # Each process would otherwise generate its own signing key and owner secret into its
    # own data dir, and a token from one API process would be refused by the next.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    with fresh_database() as url:
        for given, missing in (
            ({}, ["TETHER_JWT_SECRET", "TETHER_BOOTSTRAP_SECRET"]),
            ({"TETHER_JWT_SECRET": "k" * 48}, ["TETHER_BOOTSTRAP_SECRET"]),
        ):
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tether.cli",
                    "serve",
                    "--port",
                    str(free_port()),
                    "--data-dir",
                    str(tmp_path),
                ],
                env={**env, "PYTHONPATH": str(ROOT), "TETHER_DATABASE_URL": url, **given},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 2, r.stderr
            for name in missing:
                assert name in r.stderr
            assert "not starting" in r.stderr
            if "TETHER_JWT_SECRET" in given:
                assert "TETHER_JWT_SECRET" not in r.stderr
    assert not (tmp_path / "jwt.key").exists()  # nothing was generated on the way out


def test_two_processes_on_one_database_serve_each_others_tasks_live(
    make_server: Any,
) -> None:
    # Two Tether processes on one Postgres database (their own data dirs and executor ids,
    # the shared secrets): a token from one works at the other, and a stream held by the
    # second follows a task the first runs, live (woken by NOTIFY, not by polling) and exact.
    with fresh_database() as url:
        env = {"TETHER_DATABASE_URL": url, "TETHER_JWT_SECRET": "j" * 48, "TETHER_HEARTBEAT_S": "5"}
        a = make_server(TETHER_EXECUTOR_ID="a", **env)
        b = make_server(TETHER_EXECUTOR_ID="b", **env)
        token = httpx.post(f"{a.url}/auth", json={"secret": SECRET}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{b.url}/api/sessions", headers=auth).status_code == 200
        api_a = Api(a.client())
        sid = api_a.session("shared")
        got: list[tuple[float, dict[str, Any]]] = []
        with httpx.Client(base_url=b.url, timeout=30, headers=auth) as cb:
            with cb.stream("GET", f"/api/sessions/{sid}/stream") as r:
                assert r.status_code == 200
                root = str(
                    api_a.start(sid, "batch", {"items": list(range(5)), "delay_s": 0.3})["id"]
                )
                deadline = time.monotonic() + 30
                for f in sse_frames(r):
                    assert time.monotonic() < deadline, f"stream on b got {len(got)} events"
                    if f.event == "message":
                        got.append((time.time(), f.data))
                        if (
                            f.data["task_id"] == root
                            and f.data["data"].get("status") == "completed"
                        ):
                            break
            log = Api(cb).all_events(sid)
        assert [e for _, e in got] == log  # every event once, in order, from the other process
        assert max(at - e["ts"] for at, e in got) < 0.5  # heartbeats are 5 s apart: woken
        assert api_a.task(root)["status"] == "completed"
