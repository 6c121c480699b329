"""Engines for Tether's tables, and migrations.

SQLite: one writer, many readers. The write engine holds a single connection whose
transactions start with BEGIN IMMEDIATE, so the writer takes the file's write lock up front
(DBOS writes to the same file; a deferred transaction upgrading to a write would fail at once
with SQLITE_BUSY instead of waiting). Readers use WAL snapshots and never block the writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (alembic, DBOS's system database)."""
    u = sa.make_url(url)
    if u.drivername.startswith("sqlite"):
        return u.set(drivername="sqlite").render_as_string(hide_password=False)
    if u.drivername.startswith("postgresql"):
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
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
            self.writer = create_async_engine(url, pool_size=1, max_overflow=0)
            self.reader = create_async_engine(url, pool_size=8, max_overflow=8)
            event.listen(self.writer.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.reader.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.writer.sync_engine, "connect", _autocommit_driver)
            event.listen(self.writer.sync_engine, "begin", _begin_immediate)
        else:
            self.writer = create_async_engine(url, pool_size=10, max_overflow=10)
            self.reader = self.writer

    def migrate(self) -> None:
        """Bring the schema to the newest revision (synchronous; run before serving)."""
        engine = sa.create_engine(sync_url(self.url))
        if self.sqlite:
            with engine.connect() as conn:
                # WAL is a property of the file: set once, every later connection uses it.
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        cfg = Config(str(Path(__file__).with_name("alembic.ini")))
        try:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            engine.dispose()

    async def close(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
    dbapi_conn.isolation_level = None


def _begin_immediate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
