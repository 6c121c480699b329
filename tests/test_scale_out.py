"""Scale-out on Postgres: API processes behind Debian's nginx, workers beside them, and
`kill -9` of one of each in the middle of twenty batch tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.proxy import nginx_in_front
from tests.helpers.server import (
    ROOT,
    SECRET,
    Api,
    ended,
    follow_resuming,
    free_port,
    wait_until,
)

TASKS, ITEMS = 20, 6


def step_runs(counter: Path) -> dict[str, list[tuple[str, float, str]]]:
    """task id -> [("run" | "done", when, executor id), ...] from the traced_item lines."""
    runs: dict[str, list[tuple[str, float, str]]] = {}
    for line in counter.read_text().splitlines() if counter.exists() else []:
        what, task_id, at, where = line.split(" ")
        runs.setdefault(task_id, []).append((what, float(at), where))
    return runs


def failover_env(db: str, counter: Path, **more: str) -> dict[str, str]:
    """A shared database whose workers beat every 0.2 s and are taken for dead after 1.5 s;
    traced steps are recorded in `counter`."""
    return shared_env(
        db,
        TETHER_WORKER_HEARTBEAT_S="0.2",
        TETHER_WORKER_STALE_S="1.5",
        TETHER_TEST_COUNTER=str(counter),
        **more,
    )


def test_two_apis_behind_nginx_and_two_workers_survive_kill_9_of_one_of_each(
    make_server: Any, tmp_path: Path
) -> None:
    counter = tmp_path / "steps.txt"
    with fresh_database() as db:
        env = failover_env(
            db,
            counter,
            TETHER_HEARTBEAT_S="0.3",
            # Ten tasks at most per worker: the twenty are spread over both.
            TETHER_WORKER_CONCURRENCY="10",
        )
        api_a, api_b = (
            make_server(args=("--no-worker",), TETHER_EXECUTOR_ID=name, **env)
            for name in ("api-a", "api-b")
        )
        w1, _w2 = (
            make_server(command="worker", TETHER_EXECUTOR_ID=name, **env) for name in ("w1", "w2")
        )
        ups = "\n    ".join(
            f"server 127.0.0.1:{s.port} max_fails=1 fail_timeout=30s;" for s in (api_a, api_b)
        )
        with nginx_in_front(tmp_path, ups) as url:
            clients = [
                httpx.Client(base_url=url, timeout=10, headers={"x-web-bootstrap-secret": SECRET})
                for _ in range(TASKS)
            ]
            sessions, roots = [], []
            for i, c in enumerate(clients):
                api = Api(c)
                sid = api.session(f"batch {i}")
                inp = {"items": list(range(ITEMS)), "delay_s": 0.4, "item_agent": "traced_item"}
                sessions.append(sid)
                roots.append(str(api.start(sid, "batch", inp)["id"]))

            results: list[tuple[list[dict[str, Any]], int] | BaseException] = [None] * TASKS  # type: ignore[list-item]

            streaming = [threading.Event() for _ in range(TASKS)]

            def follow(i: int) -> None:
                try:
                    results[i] = follow_resuming(
                        clients[i],
                        sessions[i],
                        roots[i],
                        timeout=120,
                        on_event=lambda _got: streaming[i].set(),
                    )
                except BaseException as e:  # noqa: BLE001 - reported below
                    results[i] = e

            threads = [threading.Thread(target=follow, args=(i,)) for i in range(TASKS)]
            for t in threads:
                t.start()
            # Mid-run: every client is streaming, both workers are in their tasks' steps.
            for e in streaming:
                assert e.wait(60)
            wait_until(
                lambda: (
                    sum(w == "done" for r in step_runs(counter).values() for w, *_ in r) >= TASKS
                ),
                timeout=60,
                what="a step done per task on average",
            )
            killed_at = time.time()
            api_a.kill()
            w1.kill()
            for t in threads:
                t.join(150)
            log = [Api(clients[0]).all_events(sid) for sid in sessions]
            for c in clients:
                c.close()

    # Every client saw every event of its session once, in order, though half of them
    # were streaming from the API process that died; every task completed.
    reconnects = 0
    for i, res in enumerate(results):
        assert not isinstance(res, BaseException), f"client {i}: {res!r}"
        got, connects = res
        assert got == log[i], f"client {i}"
        assert ended(got[-1], roots[i])
        reconnects += connects - 1
    assert reconnects >= 1  # some streams were on api-a
    # w1's unfinished tasks were taken over by w2, and their events say so.
    moved = [e for events in log for e in events if e["type"] == "task.moved"]
    assert moved and all(e["data"]["from"] == "w1" and e["data"]["by"] == "w2" for e in moved)
    assert set(roots) & {e["task_id"] for e in moved}  # a top-level task among them
    # No completed step ran again: a step whose work was done before the kill (with time to
    # record its checkpoint) ran once. Only a step in flight at the kill may run twice.
    runs = step_runs(counter)
    assert len(runs) == TASKS * ITEMS
    for task_id, lines in runs.items():
        assert lines[-1][0] == "done", task_id
        done_before = [at for w, at, _ in lines if w == "done" and at < killed_at - 1.0]
        if done_before:
            assert [w for w, *_ in lines] == ["run", "done"], (task_id, lines)
    # Steps ran on the workers only (the API processes were started --no-worker), and on
    # both: w1 before the kill, w2 throughout.
    assert {where for lines in runs.values() for *_, where in lines} == {"w1", "w2"}
    rerun = [t for t, lines in runs.items() if len(lines) > 2]
    assert len(rerun) <= 10  # at most one in-flight step per task of w1


def test_a_parent_hears_at_once_that_a_task_on_another_worker_ended(make_server: Any) -> None:
    # The parent's re-check of the database is 30 s apart: it is woken by the other
    # worker's commit (NOTIFY), not by polling.
    with fresh_database() as db:
        env = shared_env(db, TETHER_WORKER_CONCURRENCY="1", TETHER_CHILD_POLL_S="30")
        api = Api(make_server(args=("--no-worker",), TETHER_EXECUTOR_ID="api", **env).client())
        make_server(command="worker", TETHER_EXECUTOR_ID="w1", **env)
        sid = api.session("across workers")
        other = str(api.start(sid, "one_item", {"item": "x", "delay_s": 6})["id"])
        wait_until(lambda: api.task(other)["status"] == "running", what="w1 to run it")
        # w1 runs one task at a time: the waiting one goes to w2.
        make_server(command="worker", TETHER_EXECUTOR_ID="w2", **env)
        waiter = str(api.start(sid, "await_task", {"task_id": other})["id"])
        wait_until(lambda: api.task(waiter)["status"] == "running", what="w2 to run the waiter")
        wait_until(lambda: api.task(waiter)["status"] == "completed", timeout=20, what="the waiter")
        ended_at = {
            e["task_id"]: e["ts"]
            for e in api.all_events(sid)
            if e["type"] == "task.status" and e["data"]["status"] == "completed"
        }
        assert api.task(waiter)["result"] == {"status": "completed"}
        assert ended_at[waiter] - ended_at[other] < 2.0


def test_workers_are_woken_when_a_task_is_queued_and_when_a_slot_frees(make_server: Any) -> None:
    # The queue is polled once a minute here: every start below is a wake-up's doing (the
    # API's notification, then the end of the task that held the worker's one slot).
    with fresh_database() as db:
        env = shared_env(db, TETHER_QUEUE_POLL_S="60", TETHER_WORKER_CONCURRENCY="1")
        api = Api(make_server(args=("--no-worker",), TETHER_EXECUTOR_ID="api", **env).client())
        make_server(command="worker", TETHER_EXECUTOR_ID="w1", **env)
        sid = api.session("woken")
        # The worker looks at its queue as it starts; past this one, it waits to be woken.
        warm = str(api.start(sid, "one_item", {"item": "w", "delay_s": 0})["id"])
        wait_until(lambda: api.task(warm)["status"] == "completed", timeout=20, what="warm-up")
        first = str(api.start(sid, "one_item", {"item": "a", "delay_s": 0.5})["id"])
        second = str(api.start(sid, "one_item", {"item": "b", "delay_s": 0})["id"])
        wait_until(lambda: api.task(first)["status"] == "completed", timeout=20, what="the first")
        wait_until(lambda: api.task(second)["status"] == "completed", timeout=20, what="the next")


def test_api_only_and_worker_processes_need_a_shared_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    for command in (["serve", "--no-worker", "--port", str(free_port())], ["worker"]):
        r = subprocess.run(
            [sys.executable, "-m", "tether.cli", *command, "--data-dir", str(tmp_path)],
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2, r.stderr
        assert "needs a shared database (TETHER_DATABASE_URL)" in r.stderr
        assert "not starting" in r.stderr


def test_a_worker_stopped_cleanly_hands_its_tasks_over_at_once(
    make_server: Any, tmp_path: Path
) -> None:
    # A deploy stops w1 with SIGTERM mid-task: w2 goes on with the task at once (w1's
    # heartbeat would be stale only after 60 s), from its last completed step.
    counter = tmp_path / "steps.txt"
    with fresh_database() as db:
        env = shared_env(db, TETHER_WORKER_STALE_S="60", TETHER_TEST_COUNTER=str(counter))
        api = Api(make_server(args=("--no-worker",), TETHER_EXECUTOR_ID="api", **env).client())
        w1 = make_server(command="worker", TETHER_EXECUTOR_ID="w1", **env)
        sid = api.session("deploy")
        # Long enough items that w1 is mid-batch after w2 has started (delegation itself
        # now costs milliseconds: with 0.5 s items w1 once finished all six first).
        inp = {"items": list(range(6)), "delay_s": 1.5, "item_agent": "traced_item"}
        root = str(api.start(sid, "batch", inp)["id"])
        wait_until(lambda: len(step_runs(counter)) >= 2, what="two steps on w1")
        make_server(command="worker", TETHER_EXECUTOR_ID="w2", **env)
        stopped_at = time.time()
        assert w1.terminate() == 0
        wait_until(lambda: api.task(root)["status"] == "completed", timeout=30, what="the batch")
        events = api.all_events(sid)
    moved = [e for e in events if e["type"] == "task.moved"]
    assert {e["task_id"] for e in moved} >= {root}
    assert all(e["data"]["from"] == "w1" and "shut down" in e["data"]["reason"] for e in moved)
    assert all(e["ts"] - stopped_at < 10 for e in moved)
    runs = step_runs(counter)
    assert len(runs) == 6
    # The items done on w1 ran once; the rest ran on w2.
    assert all(lines[-1][0] == "done" for lines in runs.values())
    on_w1 = [t for t, lines in runs.items() if lines[-1][2] == "w1"]
    assert on_w1 and all(len(runs[t]) == 2 for t in on_w1)
    assert any(lines[-1][2] == "w2" for lines in runs.values())


def test_a_worker_paused_past_the_stale_time_loses_its_tasks_and_fails_none(
    make_server: Any, tmp_path: Path
) -> None:
    # w1 freezes (SIGSTOP) with tasks mid-run for longer than the stale time: w2 takes them
    # over. When w1 wakes, its steps check that their tasks are still its own (it was silent
    # past the stale time) and its next heartbeat stops the moved ones: it records no
    # outcome (no task fails). Only steps in flight at the pause run again (one
    # was seen to run a third time, on w1 after it woke: at-least-once, as for any crash).
    counter = tmp_path / "steps.txt"
    with fresh_database() as db:
        env = failover_env(db, counter, TETHER_WORKER_CONCURRENCY="2")  # two per worker
        api = Api(make_server(args=("--no-worker",), TETHER_EXECUTOR_ID="api", **env).client())
        w1, _w2 = (
            make_server(command="worker", TETHER_EXECUTOR_ID=name, **env) for name in ("w1", "w2")
        )
        sid = api.session("paused")
        inp = {"items": list(range(6)), "delay_s": 0.5, "item_agent": "traced_item"}
        roots = [str(api.start(sid, "batch", inp)["id"]) for _ in range(4)]
        wait_until(
            lambda: sum(w == "done" for r in step_runs(counter).values() for w, *_ in r) >= 4,
            what="steps done on both workers",
        )
        assert w1.proc is not None
        w1.proc.send_signal(signal.SIGSTOP)
        paused_at = time.time()
        try:
            wait_until(
                lambda: any(e["type"] == "task.moved" for e in api.all_events(sid)),
                timeout=20,
                what="w2 to take the tasks over",
            )
        finally:
            w1.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: all(api.task(r)["status"] != "running" for r in roots),
            timeout=30,
            what="the tasks to end",
        )
        statuses = {api.task(root)["status"] for root in roots}
        events = api.all_events(sid)
    assert statuses == {"completed"}
    failed = [e for e in events if e["type"] == "task.status" and e["data"]["status"] == "failed"]
    assert not failed, [(e["task_id"], e["data"]) for e in failed]
    runs = step_runs(counter)
    assert len(runs) == 24 and all(lines[-1][0] == "done" for lines in runs.values())
    assert {where for lines in runs.values() for *_, where in lines} == {"w1", "w2"}
    for task_id, lines in runs.items():
        if any(w == "done" and at < paused_at - 1.0 for w, at, _ in lines):
            assert len(lines) == 2, (task_id, lines)  # done before the pause: ran once
