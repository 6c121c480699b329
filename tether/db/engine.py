"""Engines for Tether's tables, and migrations.

SQLite: one writer, many readers. The write engine holds a single connection whose
transactions start with BEGIN IMMEDIATE, so the writer takes the file's write lock up front
(DBOS writes to the same file; a deferred transaction upgrading to a write would fail at once
with SQLITE_BUSY instead of waiting). Readers use WAL snapshots and never block the writer.

Reads and writes run as whole functions on threads with synchronous connections: one
thread hop per read or transaction. Through the async driver each statement cost a few hops
(cursor, execute, fetch, close), so one append to the log (lock, key check, status check,
inserts, updates, commit: ~38 hops) took 8.4 ms on this machine; as one function on the
writer thread it is one hop. Writes go through one thread on SQLite (one writer connection:
a second one would wait in SQLite's busy handler, which sleeps 1, 2, 5, 10 ms ...).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

from tether.db.pg_writer import PgWriter, Rows, Stmt

T = TypeVar("T")
READ_THREADS = 8
WRITE_THREADS = 4  # Postgres; SQLite has one writer
IDLE_IN_TRANSACTION_MS = 5000
MIGRATION_LOCK = 0x7E7E_0002  # Postgres advisory lock held while a process migrates
MIGRATION_POLL_S = 0.05  # how often a process waiting for another's migration tries the lock


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (alembic, DBOS's system database)."""
    u = sa.make_url(url)
    if u.drivername.startswith("sqlite"):
        return u.set(drivername="sqlite").render_as_string(hide_password=False)
    if u.drivername.startswith("postgresql"):
        u = u.set(drivername="postgresql+psycopg")
        if "options" not in u.query:
            # A transaction left open by a frozen process (SIGSTOP, a hung VM) would hold its
            # row locks until its connection died, and block every other process writing to
            # those sessions; ours never wait inside a transaction, so one idle this long is
            # such a process's, and Postgres ends it.
            u = u.update_query_dict(
                {"options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"}
            )
        return u.render_as_string(hide_password=False)
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash can lose the
    # last commits, and the log never shows a seq that was not committed.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        if self.sqlite:
            path = sa.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.writer = sa.create_engine(
            sync_url(url),
            pool_size=1 if self.sqlite else WRITE_THREADS,
            max_overflow=0,
            pool_reset_on_return=None,
        )
        if self.sqlite:
            event.listen(self.writer, "connect", _sqlite_pragmas)
            event.listen(self.writer, "connect", _immediate_driver)
        self._write_pool = ThreadPoolExecutor(
            1 if self.sqlite else WRITE_THREADS, thread_name_prefix="tether-write"
        )
        self.reader = sa.create_engine(
            sync_url(url), pool_size=READ_THREADS, max_overflow=0, pool_reset_on_return=None
        )
        if self.sqlite:
            event.listen(self.reader, "connect", _sqlite_pragmas)
        self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="tether-read")
        self._pg_writer = None if self.sqlite else PgWriter(self.writer)
        # Named locks (`lock`): on Postgres advisory locks, held on connections of their own.
        self._locker = (
            None
            if self.sqlite
            else sa.create_engine(
                sync_url(url), pool_size=2, max_overflow=30, pool_reset_on_return=None
            )
        )
        self._local_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run fn(connection) in one transaction on a writer thread: committed if fn returns,
        rolled back if it raises. A caller cancelled while it waits stops waiting; the
        transaction still ends as fn decides (it is never cut in the middle)."""

        def run() -> T:
            with self.writer.connect() as conn, conn.begin():
                if self.sqlite:
                    # The write lock up front: a deferred transaction that later upgrades to
                    # a write fails at once with SQLITE_BUSY if another process writes.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._write_pool, run)

    async def transact(self, reads: Sequence[Stmt], then: Callable[[Rows], Sequence[Stmt]]) -> None:
        """One transaction of two phases, for the log's commits: run `reads`, hand their
        rows to `then` (one list per read that returns rows), run the writes it returns,
        commit; roll back if anything raises. SQLite: one function on the writer thread.
        Postgres: two round trips from the event loop (pg_writer.py says why)."""
        if self._pg_writer is not None:
            await self._pg_writer.transact(reads, then)
            return

        def run(conn: sa.Connection) -> None:
            rows = [list(driver_sql(conn, sql, params)) for sql, params in reads]
            for sql, params in then(rows):
                driver_sql(conn, sql, params)

        await self.write(run)

    async def read(self, fn: Callable[[sa.Connection], T], *, inline: bool = False) -> T:
        """Run fn(connection) on a reader thread; everything fn reads is one consistent
        snapshot (one transaction). `inline` runs it on the event loop instead: for small
        indexed reads on a hot path, where the hand-off to a thread costs more than the read."""

        def run() -> T:
            with self.reader.connect() as conn, conn.begin():
                return fn(conn)

        if inline and self.sqlite:
            return run()
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """Hold the lock `name` against every process on this database (a Postgres advisory
        lock; on SQLite, whose file has one process, a lock of this process's). Keep what
        runs under it short: a waiter holds a connection."""
        if self._locker is None:
            lock, users = self._local_locks.setdefault(name, (asyncio.Lock(), [0]))
            users[0] += 1
            try:
                async with lock:
                    yield
            finally:
                users[0] -= 1
                if not users[0]:
                    del self._local_locks[name]
            return
        key = int.from_bytes(
            hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
        )
        conn = await asyncio.to_thread(self._locker.connect)
        attempt: asyncio.Future[Any] | None = None
        try:
            # Tries, never a blocking wait: a waiter cancelled between two tries holds
            # nothing, and one cancelled during a try learns below whether it got the lock.
            delay = 0.002
            while True:
                attempt = asyncio.ensure_future(
                    asyncio.to_thread(_advisory, conn, "pg_try_advisory_lock", key)
                )
                if await asyncio.shield(attempt):
                    break
                attempt = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            yield
        finally:
            try:
                if attempt is not None and await attempt:
                    await asyncio.to_thread(_advisory, conn, "pg_advisory_unlock", key)
            except BaseException:
                # Closing the connection releases whatever it held.
                await asyncio.to_thread(conn.invalidate)
                raise
            finally:
                await asyncio.to_thread(conn.close)

    def migrate(self, then: Callable[[], None] | None = None) -> None:
        """Bring the schema to the newest revision, then run `then` (DBOS's own schema
        setup), synchronously, before serving.

        On Postgres both run under an advisory lock: processes started together (as
        systemd, compose or k8s start them) take turns; the first migrates, the others find
        it done. Without it each ran the migrations itself, and all but one died on a
        duplicate key (`alembic_version`, or DBOS's schema)."""
        engine = sa.create_engine(sync_url(self.url), poolclass=sa.pool.NullPool)
        try:
            if self.sqlite:
                with engine.connect() as conn:
                    # WAL is a property of the file: set once, every later connection uses it.
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                self._upgrade(engine)
                if then is not None:
                    then()
                return
            # A session lock on its own connection, let go if its process dies. Tried, not
            # waited for in `pg_advisory_lock`: a waiting statement is an open transaction,
            # and DBOS's CREATE INDEX CONCURRENTLY (under the lock) waits for every open
            # transaction to end; neither would ever go on.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
                try_lock = f"SELECT pg_try_advisory_lock({MIGRATION_LOCK})"
                while not lock.exec_driver_sql(try_lock).scalar():
                    time.sleep(MIGRATION_POLL_S)
                try:
                    self._upgrade(engine)
                    if then is not None:
                        then()
                finally:
                    lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        finally:
            engine.dispose()

    @staticmethod
    def _upgrade(engine: sa.Engine) -> None:
        cfg = Config(str(Path(__file__).with_name("alembic.ini")))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    async def close(self) -> None:
        if self._pg_writer is not None:
            await self._pg_writer.close()
        self._write_pool.shutdown(wait=True)
        self.writer.dispose()
        self._read_pool.shutdown(wait=True)
        self.reader.dispose()
        if self._locker is not None:
            self._locker.dispose()


def _advisory(conn: sa.Connection, fn: str, key: int) -> Any:
    # Committed at once: a session lock outlives it, and a connection idle in a
    # transaction would be ended by Postgres (IDLE_IN_TRANSACTION_MS), lock and all.
    out = conn.exec_driver_sql(f"SELECT {fn}(%s)", (key,)).scalar()
    conn.commit()
    return out


def _immediate_driver(dbapi_conn: Any, _record: Any) -> None:
    # The writer connection is DBOS's too (see Database.writer): its transactions are the
    # sqlite3 module's, begun IMMEDIATE before the first write, as DBOS sets them up itself.
    dbapi_conn.isolation_level = "IMMEDIATE"


def driver_sql(conn: sa.Connection, statement: str, params: Any) -> Any:
    """Driver SQL for hot paths, `?` marks on every backend. Compiling Core
    statements cost about half a millisecond each on this machine, most of a commit; errors
    still come wrapped as SQLAlchemy's (a full disk is an OperationalError)."""
    if conn.dialect.paramstyle != "qmark":
        statement = statement.replace("?", "%s")
    return conn.exec_driver_sql(statement, params)


def driver_rows(conn: sa.Connection, statement: str, params: Any) -> Any:
    """`driver_sql` on the DB-API cursor itself, for reads whose rows are many and simple
    (a catch-up page): rows are the driver's tuples, with none of SQLAlchemy's result
    processing (about half the time of a page went to it). Errors at execute come wrapped
    as SQLAlchemy's, as `driver_sql`'s do; the cursor is in the connection's transaction."""
    if conn.dialect.paramstyle != "qmark":
        statement = statement.replace("?", "%s")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # a live connection's
    try:
        cursor.execute(statement, params)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, params, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc
    return cursor
