"""Tether on Postgres: what differs from the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import (
    ROOT,
    SECRET,
    Api,
    Server,
    counter_lines,
    free_port,
    sse_frames,
    wait_until,
)


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


def follow_until_done(r: httpx.Response, root: str) -> list[tuple[float, dict[str, Any]]]:
    """Read a stream until `root` completes: each event with the time it was received."""
    got: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + 30
    for f in sse_frames(r):
        assert time.monotonic() < deadline, f"the stream got {len(got)} events in 30 s"
        if f.event == "message":
            got.append((time.time(), f.data))
            if f.data["task_id"] == root and f.data["data"].get("status") == "completed":
                return got
    raise AssertionError(f"the stream ended after {len(got)} events")


def worker_and_api(make_server: Any, env: dict[str, str]) -> tuple[Server, Server]:
    """Two processes on one database: a runs tasks (and serves the API), b is API only,
    so what b shows of a task was committed by a."""
    a = make_server(TETHER_EXECUTOR_ID="a", **env)
    b = make_server(args=("--no-worker",), TETHER_EXECUTOR_ID="b", **env)
    return a, b


def test_two_processes_on_one_database_serve_each_others_tasks_live(
    make_server: Any,
) -> None:
    # Two Tether processes on one Postgres database (their own data dirs and executor ids,
    # the shared secrets): a token from one works at the other, and a stream held by the
    # second (API only) follows a task the first runs, live (woken by NOTIFY, not by
    # polling) and exact.
    with fresh_database() as url:
        env = shared_env(url, TETHER_HEARTBEAT_S="5")
        a, b = worker_and_api(make_server, env)
        token = httpx.post(f"{a.url}/auth", json={"secret": SECRET}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{b.url}/api/sessions", headers=auth).status_code == 200
        api_a = Api(a.client())
        sid = api_a.session("shared")
        with httpx.Client(base_url=b.url, timeout=30, headers=auth) as cb:
            with cb.stream("GET", f"/api/sessions/{sid}/stream") as r:
                assert r.status_code == 200
                root = str(
                    api_a.start(sid, "batch", {"items": list(range(5)), "delay_s": 0.3})["id"]
                )
                got = follow_until_done(r, root)
            log = Api(cb).all_events(sid)
        assert [e for _, e in got] == log  # every event once, in order, from the other process
        assert max(at - e["ts"] for at, e in got) < 0.5  # heartbeats are 5 s apart: woken
        assert api_a.task(root)["status"] == "completed"


def test_a_cancel_sent_to_one_process_stops_the_coroutine_on_another(make_server: Any) -> None:
    # The task runs on a; the person's page talks to b (API only). Cancelling through b
    # stops the coroutine on a at once (not when it next touches the database), and says
    # so in the log.
    with fresh_database() as url:
        env = shared_env(url)
        a, b = worker_and_api(make_server, env)
        api_a, api_b = Api(a.client()), Api(b.client())
        sid = api_a.session("cancel")
        task = str(api_a.start(sid, "hold", {"hold_s": 60})["id"])
        wait_until(lambda: f"holding {task}" in counter_lines(a), what="the step to hold")
        r = api_b.c.post(f"/api/tasks/{task}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        wait_until(
            lambda: f"cancelled {task}" in counter_lines(a),
            timeout=10,
            what="the coroutine on the other process to be cancelled",
        )
        assert api_a.task(task)["status"] == "cancelled"
        statuses = [
            e["data"]["status"] for e in api_a.all_events(sid) if e["type"] == "task.status"
        ]
        assert statuses[-1] == "cancelled" and statuses.count("cancelled") == 1
        assert "completed" not in statuses


def test_failed_sign_ins_count_across_processes(make_server: Any) -> None:
    # Guessing the secret at two processes in turn gets no more tries than at one.
    with fresh_database() as url:
        env = shared_env(url, TETHER_AUTH_MAX_FAILURES="3", TETHER_AUTH_FAILURE_WINDOW_S="60")
        a = make_server(TETHER_EXECUTOR_ID="a", **env)
        b = make_server(TETHER_EXECUTOR_ID="b", **env)

        def guess(server: Any, secret: str = "wrong-guess-0123456789") -> httpx.Response:
            return httpx.post(f"{server.url}/auth", json={"secret": secret})

        assert [guess(a).status_code, guess(a).status_code, guess(b).status_code] == [401] * 3
        r = guess(b)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert int(r.headers["retry-after"]) >= 1
        assert guess(a, SECRET).status_code == 429  # the address is held back everywhere


def test_a_process_starting_leaves_the_work_of_another_live_process_alone(
    make_server: Any,
) -> None:
    # b starts (here with other code) while a runs a task: b's recovery neither runs it a
    # second time nor marks it interrupted; a's cancel still reaches it.
    with fresh_database() as url:
        env = shared_env(url)
        a = make_server(TETHER_EXECUTOR_ID="a", TETHER_APP_VERSION="v1", **env)
        api_a = Api(a.client())
        sid = api_a.session("live")
        task = str(api_a.start(sid, "hold", {"hold_s": 60})["id"])
        wait_until(lambda: f"holding {task}" in counter_lines(a), what="the step to hold")
        b = make_server(TETHER_EXECUTOR_ID="b", TETHER_APP_VERSION="v2", **env)
        api_b = Api(b.client())
        assert api_b.task(task)["status"] == "running"  # b is up: its recovery has run
        assert f"holding {task}" not in counter_lines(b)
        api_a.c.post(f"/api/tasks/{task}/cancel").raise_for_status()
        wait_until(lambda: f"cancelled {task}" in counter_lines(a), what="a's coroutine to stop")
        statuses = [
            e["data"]["status"] for e in api_b.all_events(sid) if e["type"] == "task.status"
        ]
        assert statuses == ["running", "cancelled"], statuses


def test_signing_out_at_one_process_closes_the_streams_at_another_now(make_server: Any) -> None:
    # Heartbeats are 5 s apart: a stream that closes within 2 s was told, not polled.
    with fresh_database() as url:
        env = shared_env(url, TETHER_HEARTBEAT_S="5")
        a = make_server(TETHER_EXECUTOR_ID="a", **env)
        b = make_server(TETHER_EXECUTOR_ID="b", **env)
        with httpx.Client(base_url=a.url, timeout=10) as tab:  # a browser tab signed in at a
            r = tab.post("/auth", json={"secret": SECRET})
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            sid = tab.post("/api/sessions", json={}, headers=auth).json()["id"]
            with httpx.Client(base_url=b.url, timeout=30) as c:
                with c.stream("GET", f"/api/sessions/{sid}/stream", headers=auth) as s:
                    frames = sse_frames(s)
                    assert next(frames).event == "snapshot"
                    assert tab.post("/auth/logout", headers=auth).status_code == 204
                    t0 = time.monotonic()
                    last = [f for f in frames if f.event != "heartbeat"][-1]
                    took = time.monotonic() - t0
                assert last.event == "auth" and "signed out" in last.data["reason"]
                assert took < 2.0, took
                assert c.get("/api/sessions", headers=auth).status_code == 401


def test_a_lost_listening_connection_is_made_again_and_nothing_is_missed(
    make_server: Any,
) -> None:
    # The database drops every process's listening connection (a failover, an admin) while
    # a stream on b (API only) waits for a task a runs: b listens again and its stream still
    # gets every event, once, in order, including those committed while nobody listened.
    import psycopg

    with fresh_database() as url:
        env = shared_env(url, TETHER_HEARTBEAT_S="5")
        a, b = worker_and_api(make_server, env)
        api_a = Api(a.client())
        sid = api_a.session("dropped")
        with psycopg.connect(url, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN tether%'"
            ).fetchone()
        assert dropped is not None and dropped[0] == 2  # one per process
        with b.client(timeout=30) as cb:
            with cb.stream("GET", f"/api/sessions/{sid}/stream") as r:
                root = str(
                    api_a.start(sid, "batch", {"items": list(range(4)), "delay_s": 0.2})["id"]
                )
                got = follow_until_done(r, root)
            assert [e for _, e in got] == Api(cb).all_events(sid)
