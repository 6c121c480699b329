"""Starting on a shared database: every process at once (what systemd, compose and k8s do),
and one name per live process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import Api, Server, wait_until
from tether.errors import Conflict

if TYPE_CHECKING:
    from tether.runtime.workers import ExecutorClaim

ROUNDS = 10


def _live_workers(db: str, stale_s: float = 5.0) -> set[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT id FROM tether_executors WHERE heartbeat_at > %s", (time.time() - stale_s,)
        ).fetchall()
    return {r[0] for r in rows}


def _logs(procs: list[Server]) -> str:
    return "\n".join(f"--- {p.env['TETHER_EXECUTOR_ID']}:\n{p.log()}" for p in procs)


def test_two_apis_and_two_workers_started_at_once_on_a_fresh_database_all_come_up(
    tmp_path: Path,
) -> None:
    # Each process used to run the migrations itself: all but one died with a duplicate key
    # on alembic_version (or DBOS's tables). Ten rounds, each on a new database.
    for round_ in range(ROUNDS):
        with fresh_database() as db:
            env = shared_env(db)
            procs = [
                Server(
                    tmp_path / f"r{round_}-{name}",
                    env={**env, "TETHER_EXECUTOR_ID": name},
                    command=command,
                    args=args,
                )
                for name, command, args in (
                    ("api-a", "serve", ("--no-worker",)),
                    ("api-b", "serve", ("--no-worker",)),
                    ("w1", "worker", ()),
                    ("w2", "worker", ()),
                )
            ]
            for p in procs:
                p.data_dir.mkdir(parents=True)
            try:
                # Started in the same instant; each start waits until its process is
                # ready (healthz 200 for an API, "TETHER_WORKER=" for a worker) and fails
                # at once if it exits.
                with ThreadPoolExecutor(len(procs)) as pool:
                    starts = [pool.submit(p.start) for p in procs]
                failed = [f.exception() for f in starts if f.exception() is not None]
                assert not failed, f"round {round_}: {failed[0]}\n{_logs(procs)}"
                for api in procs[:2]:
                    with api.client() as c:
                        assert c.get("/healthz").status_code == 200
                        assert c.get("/api/sessions").status_code == 200, f"round {round_}"
                # Both workers beat.
                wait_until(
                    lambda db=db: _live_workers(db) >= {"w1", "w2"},
                    timeout=10,
                    what=f"both workers' heartbeats (round {round_}): {_logs(procs)}",
                )
                alive = [p.proc is not None and p.proc.poll() is None for p in procs]
                assert all(alive), f"round {round_}: {_logs(procs)}"
            finally:
                for p in procs:
                    p.stop()


def test_an_executor_id_in_use_is_refused_and_a_restart_under_it_resumes_its_work(
    make_server: Any, tmp_path: Path
) -> None:
    # A second worker under w1's name used to start: both beat as "w1", so when one died
    # its tasks were never found stale and stayed `running` forever.
    counter = tmp_path / "steps.txt"
    with fresh_database() as db:
        # Taken for dead only after 60 s: the work below is resumed by the restart itself.
        env = shared_env(db, TETHER_WORKER_STALE_S="60", TETHER_TEST_COUNTER=str(counter))
        api = Api(make_server(args=("--no-worker",), TETHER_EXECUTOR_ID="api", **env).client())
        w1 = make_server(command="worker", TETHER_EXECUTOR_ID="w1", **env)
        sid = api.session("one name, one process")
        inp = {"items": list(range(4)), "delay_s": 0.5, "item_agent": "traced_item"}
        root = str(api.start(sid, "batch", inp)["id"])
        wait_until(lambda: counter.exists() and "run" in counter.read_text(), what="a step on w1")
        for command, args in (("worker", ()), ("serve", ("--no-worker",))):
            dup = Server(
                tmp_path / f"dup-{command}",
                env={**env, "TETHER_EXECUTOR_ID": "w1"},
                command=command,
                args=args,
            )
            dup.data_dir.mkdir()
            try:
                with pytest.raises(AssertionError, match="exited with 2"):
                    dup.start()
            finally:
                dup.stop()
            assert "executor id 'w1' is in use by another live process" in dup.log()
            assert "not starting" in dup.log()
        # w1 dies; restarted under its name at once (its heartbeat is still fresh), it
        # starts and resumes the batch from its last completed step.
        w1.kill()
        at_kill = [
            line.split()[1] for line in counter.read_text().splitlines() if line[:4] == "done"
        ]
        make_server(command="worker", TETHER_EXECUTOR_ID="w1", **env)
        api.wait_status(root, "completed", timeout=60)
        events = api.all_events(sid)
    assert not [e for e in events if e["type"] == "task.moved"]  # resumed, not taken over
    # From its last completed step: no step recorded before the kill ran again. (The items
    # run one by one, and the next starts only once the last one's step is recorded, so
    # only the newest step done before the kill may have been cut between its work and
    # its record: a step is at least once, and that one runs again.)
    done = [line.split()[1] for line in counter.read_text().splitlines() if line[:4] == "done"]
    assert len(set(done)) == 4
    again = {d for d in done if done.count(d) > 1}
    assert again <= set(at_kill[-1:]) and len(done) <= 5, (done, at_kill)
    ends = [e for e in events if e["type"] == "task.status" and e["task_id"] == root]
    assert [e["data"]["status"] for e in ends][-1] == "completed"


def test_a_hold_on_an_executor_id_lost_with_its_connection_is_taken_again_or_given_up() -> None:
    # Imported here: the rest of this file runs on code from before the claim, too.
    from tether.runtime.workers import ExecutorClaim

    with fresh_database() as db:
        a = ExecutorClaim(db, "w1")
        a.acquire()
        try:
            # A lost host's session (and the id) is let go in seconds, not the OS's 2 h.
            assert a._conn is not None
            assert a._conn.exec_driver_sql("SHOW tcp_keepalives_idle").scalar() == "10"
            _end_session_of(db, a)  # the database restarted, or the network broke
            assert a.holds()  # nobody else had it: taken again
            with pytest.raises(Conflict, match="in use by another live process"):
                ExecutorClaim(db, "w1").acquire()
            _end_session_of(db, a)
            b = ExecutorClaim(db, "w1")
            b.acquire()  # another process came up under the name meanwhile
            try:
                assert not a.holds()  # its worker stops, handing nothing over
            finally:
                b.release()
            other = ExecutorClaim(db, "w2")
            other.acquire()  # other names are not in the way
            other.release()
        finally:
            a.release()


def _end_session_of(db: str, claim: ExecutorClaim) -> None:
    assert claim._conn is not None
    pid = claim._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
