"""Sessions in the database, always scoped to their owner.

Reads `tether_sessions` (and, for a sidebar's state, the statuses of its top-level tasks);
writes `tether_sessions`: create and rename (with the title's search row), and delete, which
removes the session's approvals, events, steps, files, tasks and search rows with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database, driver_rows
from tether.db.ids import new_id
from tether.db.schema import approvals, events, files, sessions, steps, tasks
from tether.errors import Conflict, NotFound
from tether.model import TERMINAL, UNFINISHED_VALUES, Session, TaskStatus
from tether.search import forget_session, index_for


def session_from_row(row: sa.RowMapping) -> Session:
    """A `tether_sessions` row (a mapping: `result.mappings()`) as a Session."""
    return Session(
        row["id"],
        row["owner"],
        row["title"],
        row["created_at"],
        row["head_seq"],
        row["low_seq"],
        row["task_count"],
    )


# Session's fields, in its order, as driver SQL: read at every stream open and page, where
# building and compiling the Core statement cost more than the read.
_S = sessions.c
_SESSION = (
    f"SELECT {_S.id.name}, {_S.owner.name}, {_S.title.name}, {_S.created_at.name},"
    f" {_S.head_seq.name}, {_S.low_seq.name}, {_S.task_count.name}"
    f" FROM {sessions.name} WHERE {_S.id.name} = ? AND {_S.owner.name} = ?"
)


def read_session(c: sa.Connection, session_id: str, owner: str) -> Session:
    """The owner's session (NotFound for a missing one, or another's)."""
    cursor = driver_rows(c, _SESSION, (session_id, owner))
    try:
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        raise NotFound("session not found")
    return Session(*row)


class Sessions:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.search = index_for(db.sqlite)  # a title is found from the commit that sets it

    async def create_session(
        self, owner: str, title: str, session_id: str | None = None
    ) -> Session:
        """A new session; `session_id` names it (an AG-UI thread's, made on first use)."""
        s = Session(session_id or new_id("s"), owner, title, time.time(), 0, 0)

        def tx(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(sessions).values(
                    id=s.id, owner=owner, title=title, created_at=s.created_at
                )
            )
            self.search.set_title(conn, s.id, title)

        await self.db.write(tx)
        return s

    async def session(self, session_id: str, owner: str) -> Session:
        """The owner's session (NotFound for a missing one, or another's)."""
        return await self.db.read(lambda c: read_session(c, session_id, owner))

    async def list_sessions(
        self, owner: str, limit: int, before: tuple[float, str] | None = None
    ) -> list[Session]:
        """The owner's sessions, newest first, `limit` at most, older than `before`
        (created_at, id): keyset pages stay exact while sessions are being created."""
        q = sa.select(sessions).where(sessions.c.owner == owner)
        if before is not None:
            at, sid = before
            q = q.where(
                sa.or_(
                    sessions.c.created_at < at,
                    sa.and_(sessions.c.created_at == at, sessions.c.id < sid),
                )
            )
        q = q.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
        return await self.db.read(lambda c: [session_from_row(r) for r in c.execute(q).mappings()])

    async def rename_session(self, session_id: str, owner: str, title: str) -> Session:
        def tx(conn: sa.Connection) -> int:
            done = conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id, sessions.c.owner == owner)
                .values(title=title)
            )
            if done.rowcount:
                self.search.set_title(conn, session_id, title)
            return done.rowcount

        if await self.db.write(tx) == 0:
            raise NotFound("session not found")
        return await self.session(session_id, owner)

    async def delete_session(self, session_id: str, owner: str, parts: int = 0) -> None:
        """Delete a session with its tasks, events, approvals and files. A session with a task that
        has not ended is refused (409): cancel it first, so no work is cut off unseen.

        `parts` (SQLite, a full disk): its events, steps and files go first, that many rows per
        transaction, the WAL checkpointed after each so the next reuses its room; the rest
        goes in one transaction at the end (a delete cut short leaves the session there, to
        be deleted again)."""

        def check(conn: sa.Connection) -> None:
            owned = conn.execute(
                sa.select(sessions.c.id).where(
                    sessions.c.id == session_id, sessions.c.owner == owner
                )
            )
            if owned.first() is None:
                raise NotFound("session not found")
            # Counted as a person sees them: top-level tasks (stopping one stops its sub-agents).
            running = conn.execute(
                sa.select(sa.func.count(), sa.func.count(tasks.c.parent_id))
                .select_from(tasks)
                .where(tasks.c.session_id == session_id, tasks.c.status.in_(UNFINISHED_VALUES))
            )
            n, under = running.one()
            if n:
                top = n - under or n
                tasks_left = (
                    "1 unfinished task; stop it"
                    if top == 1
                    else f"{top} unfinished tasks; stop them"
                )
                raise Conflict(f"this session still has {tasks_left} first")

        def some(table: sa.Table) -> Callable[[sa.Connection], int]:
            def tx(conn: sa.Connection) -> int:
                check(conn)
                rowids = (
                    sa.select(sa.literal_column("rowid"))
                    .select_from(table)
                    .where(table.c.session_id == session_id)
                    .limit(parts)
                    .scalar_subquery()
                )
                done = conn.execute(sa.delete(table).where(sa.literal_column("rowid").in_(rowids)))
                return int(done.rowcount)

            return tx

        if parts and self.db.sqlite:
            for table in (events, steps, files):
                while await self.db.write(some(table)):
                    await asyncio.to_thread(self._checkpoint)

        def tx(conn: sa.Connection) -> None:
            check(conn)
            forget_session(conn, session_id)
            for table in (approvals, events, steps, files, tasks):
                conn.execute(sa.delete(table).where(table.c.session_id == session_id))
            conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))

        await self.db.write(tx)

    def _checkpoint(self) -> None:
        with self.db.writer.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)")

    async def session_states(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per session (already owner-checked): what its top-level tasks are doing, for a
        sidebar. `state` is running (any unfinished), else the latest one's outcome, or
        empty; `tasks` counts them."""
        if not ids:
            return {}
        q = (
            sa.select(tasks.c.session_id, tasks.c.status)
            .where(tasks.c.session_id.in_(ids), tasks.c.parent_id.is_(None))
            .order_by(tasks.c.created_at, tasks.c.id)
        )
        rows = await self.db.read(lambda c: c.execute(q).all())
        out: dict[str, dict[str, Any]] = {i: {"state": "empty", "tasks": 0} for i in ids}
        running: set[str] = set()
        for sid, status in rows:
            st = out[sid]
            st["tasks"] += 1
            if TaskStatus(status) in TERMINAL:
                st["state"] = status if sid not in running else "running"
            else:
                running.add(sid)
                st["state"] = "running"
        return out
