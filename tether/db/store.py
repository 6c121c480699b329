"""Reads of sessions and tasks, always scoped to their owner. (Events: `tether.events.log`.)"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.schema import sessions, tasks
from tether.errors import NotFound
from tether.model import TERMINAL, Session, Task, TaskStatus


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _task(row: Any) -> Task:
    return Task(
        id=row.id,
        session_id=row.session_id,
        parent_id=row.parent_id,
        agent=row.agent,
        input=_loads(row.input),
        status=TaskStatus(row.status),
        progress_n=row.progress_n,
        progress_m=row.progress_m,
        result=_loads(row.result),
        error=_loads(row.error),
        app_version=row.app_version,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        last_seq=row.last_seq,
    )


def _session(row: Any) -> Session:
    return Session(row.id, row.owner, row.title, row.created_at, row.head_seq, row.low_seq)


def _with_children(found: list[Task]) -> list[Task]:
    by_id = {t.id: t for t in found}
    for t in found:
        if t.parent_id in by_id:
            by_id[t.parent_id].children.append(t.id)
    return found


def read_snapshot(c: sa.Connection, session_id: str, owner: str) -> tuple[Session, list[Task]]:
    row = c.execute(
        sa.select(sessions).where(sessions.c.id == session_id, sessions.c.owner == owner)
    ).first()
    if row is None:
        raise NotFound(f"session {session_id} not found")
    res = c.execute(
        sa.select(tasks)
        .where(tasks.c.session_id == session_id)
        .order_by(tasks.c.created_at, tasks.c.id)
    )
    return _session(row), _with_children([_task(r) for r in res])


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_session(self, owner: str, title: str) -> Session:
        s = Session(new_id("s"), owner, title, time.time(), 0, 0)
        async with self.db.writer.begin() as conn:
            await conn.execute(
                sa.insert(sessions).values(
                    id=s.id, owner=owner, title=title, created_at=s.created_at
                )
            )
        return s

    async def list_sessions(self, owner: str) -> list[Session]:
        q = (
            sa.select(sessions)
            .where(sessions.c.owner == owner)
            .order_by(sessions.c.created_at.desc())
        )
        return await self.db.read(lambda c: [_session(r) for r in c.execute(q)])

    async def session(self, session_id: str, owner: str) -> Session:
        q = sa.select(sessions).where(sessions.c.id == session_id, sessions.c.owner == owner)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            raise NotFound(f"session {session_id} not found")
        return _session(row)

    async def snapshot(self, session_id: str, owner: str) -> tuple[Session, list[Task]]:
        """The session (with its head seq) and every task, read in one consistent snapshot."""
        return await self.db.read(lambda c: read_snapshot(c, session_id, owner))

    async def task(self, task_id: str, owner: str | None) -> Task:
        """A task and its direct children. owner=None is for the runtime's own reads."""
        query = sa.select(tasks).where(tasks.c.id == task_id)
        if owner is not None:
            query = query.join(sessions, sessions.c.id == tasks.c.session_id).where(
                sessions.c.owner == owner
            )

        def read(c: sa.Connection) -> Task:
            row = c.execute(query).first()
            if row is None:
                raise NotFound(f"task {task_id} not found")
            t = _task(row)
            res = c.execute(
                sa.select(tasks.c.id)
                .where(tasks.c.parent_id == task_id)
                .order_by(tasks.c.created_at, tasks.c.id)
            )
            t.children = [r[0] for r in res]
            return t

        return await self.db.read(read)

    async def subtree(self, task_id: str) -> list[Task]:
        """The task and all its descendants, parents before children."""

        def read(c: sa.Connection) -> list[Task]:
            out: list[Task] = [
                _task(r) for r in c.execute(sa.select(tasks).where(tasks.c.id == task_id))
            ]
            frontier = [t.id for t in out]
            while frontier:
                found = [
                    _task(r)
                    for r in c.execute(sa.select(tasks).where(tasks.c.parent_id.in_(frontier)))
                ]
                out.extend(found)
                frontier = [t.id for t in found]
            return out

        return await self.db.read(read)

    async def unfinished(self) -> list[Task]:
        terminal = [s.value for s in TERMINAL]
        q = sa.select(tasks).where(tasks.c.status.not_in(terminal)).order_by(tasks.c.created_at)
        return await self.db.read(lambda c: [_task(r) for r in c.execute(q)])
