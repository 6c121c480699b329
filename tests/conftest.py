from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import Api, Server, free_port
from tether.db.engine import Database
from tether.events.log import EventLog

# About how long each file takes (seconds, run alone on the 2-core machine, 2026-12-06).
# Under xdist (`./dev test`: --dist loadfile --no-loadscope-reorder) a file runs whole on one
# worker, and files are handed out in the order collected: this puts the longest first, so
# the last ones handed out are short and both workers finish together (by default xdist
# orders files by their number of tests, which sent test_start, three tests and the
# longest file, last). A file not listed counts as OTHER_FILE_S. Rough is enough; update
# a number when a file's time changes a lot (`./dev test --durations=0` shows them).
FILE_S = {
    "tests/test_agui.py": 80,
    "tests/e2e/test_search.py": 75,
    "tests/test_search.py": 50,
    "tests/test_term.py": 70,
    "tests/test_start.py": 50,
    "tests/e2e/test_product.py": 48,
    "tests/test_scale_out.py": 48,
    "tests/test_auth.py": 44,
    "tests/e2e/test_web.py": 43,
    "tests/e2e/test_behave.py": 42,
    "tests/test_model_agents.py": 39,
    "tests/test_conversation.py": 34,
    "tests/test_mcp_servers.py": 33,
    "tests/test_cors.py": 25,
    "tests/test_quotas.py": 29,
    "tests/test_search_api.py": 28,
    "tests/e2e/test_chat.py": 28,
    "tests/e2e/test_branches.py": 27,
    "tests/test_openapi.py": 26,
    "tests/test_restart.py": 26,
    "tests/e2e/test_look.py": 25,
    "tests/test_postgres.py": 22,
    "tests/test_sdk.py": 21,
    "tests/test_sdk_stream.py": 21,
    "tests/test_model_deadlines.py": 20,
    "tests/test_attack.py": 17,
    "tests/test_auth_limits.py": 17,
    "tests/test_shared_sessions.py": 17,
    "tests/test_stream.py": 17,
    "tests/test_log.py": 15,
    "tests/test_delegation.py": 13,
    "tests/test_js_client.py": 13,
    "tests/test_limits.py": 13,
    "tests/test_deploy.py": 12,
    "tests/test_workspace.py": 12,
    "tests/test_failures.py": 11,
    "tests/test_wire.py": 10,
    "tests/test_idempotency.py": 9,
    "tests/test_approvals.py": 8,
    "tests/test_sdk_docs.py": 8,
    "tests/test_sessions_admin.py": 8,
    "tests/test_bad_input.py": 7,
    "tests/test_batch.py": 6,
    "tests/test_docs.py": 6,
    "tests/test_nul.py": 6,
    "tests/test_cancel.py": 5,
    "tests/test_context.py": 4,
    "tests/test_pg_writer.py": 3,
    "tests/test_remote_feed.py": 2,
    "tests/test_stream_inproc.py": 2,
    "tests/test_durable.py": 1,
    "tests/test_public_api.py": 1,
    "tests/test_static.py": 1,
}
OTHER_FILE_S = 20


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the order does not matter, keep pytest's
    # Stable: each file's tests stay together and in their order.
    items.sort(key=lambda item: -FILE_S.get(item.nodeid.split("::")[0], OTHER_FILE_S))


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[callable]:
    """Factory: start real servers on fresh data dirs; all are killed at the end."""
    servers: list[Server] = []

    def make(
        data_dir: Path | None = None,
        *,
        command: str = "serve",
        args: tuple[str, ...] = (),
        **env: str,
    ) -> Server:
        d = data_dir or tmp_path / f"data{len(servers)}"
        d.mkdir(parents=True, exist_ok=True)
        s = Server(d, env=dict(env), command=command, args=args)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment that puts a server on the embedded SQLite file, then on a fresh
    Postgres database (with the shared secrets a database other than SQLite requires)."""
    if request.param == "sqlite":
        yield {}
        return
    with fresh_database() as url:
        yield shared_env(url)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for tests that only read and write their own sessions."""
    s = Server(tmp_path_factory.mktemp("shared"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def api(shared_server: Server) -> Iterator[Api]:
    with shared_server.client() as c:
        yield Api(c)


MakeLog = Callable[..., Coroutine[Any, Any, EventLog]]


@pytest.fixture(params=["sqlite", "postgres"])
async def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLog]:
    """Factory: a started event log (in process, no DBOS) on a fresh SQLite file, then on a
    fresh Postgres database: the log's contract holds on both backends. Each log is stopped
    and its database closed (and dropped) at the end."""
    made: list[EventLog] = []
    with ExitStack() as dbs:

        def url(i: int) -> str:
            if request.param == "sqlite":
                return f"sqlite+aiosqlite:///{tmp_path / f'log{i}.db'}"
            return dbs.enter_context(fresh_database())

        async def make(retention: int = 0, same_db_as: EventLog | None = None) -> EventLog:
            # same_db_as: a second writer on one database, as another process would be
            db = Database(same_db_as.db.url if same_db_as else url(len(made)))
            db.migrate()
            log = EventLog(db, retention=retention)
            log.start()
            made.append(log)
            return log

        yield make
        for log in made:
            await log.stop()
            await log.db.close()


@pytest.fixture
async def sqlite_log(tmp_path: Path) -> AsyncIterator[EventLog]:
    """A started event log on a SQLite file, for what only SQLite can be made to do."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    db.migrate()
    log = EventLog(db)
    log.start()
    yield log
    await log.stop()
    await db.close()


@pytest.fixture
async def log(make_log: MakeLog) -> EventLog:
    return await make_log()


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[RunningFakeLLM]:
    fake = RunningFakeLLM(free_port()).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_llm(fake_llm_server: RunningFakeLLM) -> RunningFakeLLM:
    """The local model server (Anthropic and OpenAI streaming wire formats), reset: fast,
    no faults, no recorded requests."""
    brain = fake_llm_server.fake.brain
    brain.tokens_per_s, brain.faults = 0.0, []
    brain.requests.clear()
    return fake_llm_server
