"""A session used through several processes on one Postgres database: its turns run one at a
time in the order sent whichever API took them, and its files are the same on every worker.
Real processes (two APIs, two workers) on the local Postgres."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import KEYS, agents_toml, control, say, workspace_file
from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import Api, Server

TERMINAL = {"completed", "failed", "cancelled", "interrupted"}


def _cluster(
    make_server: Callable[..., Server], fake: RunningFakeLLM, tmp_path: Path, db: str
) -> tuple[list[Api], list[Server]]:
    """Two API processes (no worker) and two workers on `db`, with the test model agents
    (no approvals: the tools run at once)."""
    agents = tmp_path / "agents.toml"
    agents.write_text(agents_toml(fake, approval=[]))
    env = shared_env(
        db,
        TETHER_AGENTS_FILE=str(agents),
        **KEYS,
    )
    apis = [make_server(args=("--no-worker",), TETHER_EXECUTOR_ID=f"api-{n}", **env) for n in "ab"]
    workers = [make_server(command="worker", TETHER_EXECUTOR_ID=f"w{n}", **env) for n in (1, 2)]
    return [Api(s.client(timeout=30)) for s in apis], workers


def _done(api: Api, task_id: str) -> dict[str, Any]:
    return api.wait_status(task_id, *TERMINAL, timeout=90)


def test_turns_sent_at_once_through_two_apis_run_one_at_a_time_in_the_order_sent(
    make_server: Callable[..., Server], fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    with fresh_database() as db:
        (a, b), _workers = _cluster(make_server, fake_llm, tmp_path, db)
        sid = a.session("two tabs")
        control(fake_llm, tokens_per_s=60)  # each reply streams for a while
        sent: list[dict[str, Any]] = []
        lock = threading.Lock()

        def send(api: Api, text: str, go: threading.Barrier) -> None:
            go.wait()
            turn = say(api, sid, text)
            with lock:
                sent.append(turn)

        # Four rounds of two messages sent in the same instant, one through each API.
        for n in range(4):
            go = threading.Barrier(2)
            threads = [
                threading.Thread(target=send, args=(api, f"round {n} {who} words 4", go))
                for api, who in ((a, "a"), (b, "b"))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        ends = [_done(a, t["id"]) for t in sent]
        assert {t["status"] for t in ends} == {"completed"}, [t["error"] for t in ends]

        # The log's order of creation is the conversation's: each turn follows the one
        # created before it (never two answering the same message) ...
        events = a.all_events(sid)
        created = [e["task_id"] for e in events if e["type"] == "task.created"]
        parent = {t["id"]: t["input"]["parent"] for t in sent}
        assert len(created) == 8 and set(created) == set(parent)
        assert [parent[t] for t in created] == [None, *created[:-1]]
        # ... and runs after it has ended: its model call starts after the one before ended.
        seq_of = {(e["task_id"], e["type"]): e["seq"] for e in events}
        last_seq = {e["task_id"]: e["seq"] for e in events}
        for before, turn in zip(created, created[1:], strict=False):
            assert seq_of[(turn, "RUN_STARTED")] > last_seq[before], (before, turn)


def test_a_sessions_files_are_the_same_on_every_worker_and_go_with_the_session(
    make_server: Callable[..., Server], fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    with fresh_database() as db:
        (a, b), _workers = _cluster(make_server, fake_llm, tmp_path, db)
        sids = [a.session(f"files {n}") for n in range(6)]
        writes = [say(a, sid, f"write notes/{sid}.txt: made in {sid}") for sid in sids]
        assert {_done(a, t["id"])["status"] for t in writes} == {"completed"}
        # The next turn, through the other API, on whichever worker takes it, finds the file.
        reads = [say(b, sid, f"read notes/{sid}.txt") for sid in sids]
        for sid, t in zip(sids, reads, strict=True):
            done = _done(b, t["id"])
            assert f"made in {sid}" in done["result"]["text"], done["result"]["text"]
            assert workspace_file(a, sid, f"notes/{sid}.txt") == f"made in {sid}"
        # The turns were spread over both workers (else this proved nothing).
        ids = [t["id"] for t in writes + reads]
        with psycopg.connect(db) as c:
            ran_on = dict(
                c.execute(
                    "SELECT workflow_uuid, executor_id FROM dbos.workflow_status"
                    " WHERE workflow_uuid = ANY(%s)",
                    (ids,),
                ).fetchall()
            )
        assert set(ran_on.values()) == {"w1", "w2"}, ran_on
        # The API lists them; deleting the session deletes them.
        assert a.c.get(f"/api/sessions/{sids[0]}/files").json()["files"] == [
            {"path": f"notes/{sids[0]}.txt", "size": len(f"made in {sids[0]}")}
        ]
        assert b.c.delete(f"/api/sessions/{sids[0]}").status_code == 204
        with psycopg.connect(db) as c:
            left = c.execute(
                "SELECT count(*) FROM tether_files WHERE session_id = %s", (sids[0],)
            ).fetchone()
        assert left == (0,)
