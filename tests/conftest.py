from __future__ import annotations

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
