"""Starting on a shared database: every process at once (what systemd, compose and k8s do),
and one name per live process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import Server, wait_until

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
                    list(pool.map(Server.start, procs))
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
                assert all(alive), _logs(procs)
            finally:
                for p in procs:
                    p.stop()
