"""Tasks in the database: reads only (tasks are created and changed through the log, in
`tether.events.log`, so that every change is an event).

Reads `tether_tasks` (one task, a subtree, a session's tree, the unfinished ones) and
`tether_steps` (a task's recorded step outcomes). A task read for a person is scoped to the
owner of its session; `owner=None` is the runtime's own read.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database, driver_rows, driver_sql
from tether.db.schema import sessions, steps, tasks
from tether.db.sessions import read_session
from tether.errors import NotFound
from tether.model import TERMINAL_VALUES, Session, Task

# What a stream's snapshot says of each task: its status, not its input or result.
SUMMARY = (
    tasks.c.id,
    tasks.c.parent_id,
    tasks.c.agent,
    tasks.c.status,
    tasks.c.progress_n,
    tasks.c.progress_m,
    tasks.c.error,
    tasks.c.created_at,
    tasks.c.started_at,
    tasks.c.ended_at,
    tasks.c.last_seq,
)

# A summary row read by driver SQL, with the names of SUMMARY's columns.
Summary = namedtuple("Summary", [c.name for c in SUMMARY])  # type: ignore[misc]  # names from the table

# A session's summaries, as driver SQL: read at every stream open (compiling the Core
# statement cost more than the read of a few rows).
_SUMMARIES = (
    f"SELECT {', '.join(c.name for c in SUMMARY)} FROM {tasks.name}"
    f" WHERE {tasks.c.session_id.name} = ? LIMIT ?"
)

BRIEF_INPUT_BYTES = 2048

# A brief tree row: a summary's columns and the input if it is small (else null).
_BRIEF = (
    *SUMMARY,
    sa.case((sa.func.length(tasks.c.input) <= BRIEF_INPUT_BYTES, tasks.c.input), else_=None),
)

# A task row by id, as driver SQL: the runtime reads one several times per delegation, and
# compiling the Core statement cost more than the read.
_TASK_BY_ID = f"SELECT {', '.join(c.name for c in tasks.c)} FROM {tasks.name} WHERE id = ?"


def task_of(row: sa.RowMapping) -> Task:
    """`Task.from_row` of a result's row (`result.mappings()`)."""
    return Task.from_row(row)


def _with_children(found: list[Task]) -> list[Task]:
    by_id = {t.id: t for t in found}
    for t in found:
        if t.parent_id in by_id:
            by_id[t.parent_id].children.append(t.id)
    return found


def read_tree(c: sa.Connection, session_id: str, owner: str) -> tuple[Session, list[Task]]:
    """The owner's session and every task of it, in creation order, each with its children."""
    session = read_session(c, session_id, owner)
    res = c.execute(
        sa.select(tasks)
        .where(tasks.c.session_id == session_id)
        .order_by(tasks.c.created_at, tasks.c.id)
    )
    return session, _with_children([task_of(r) for r in res.mappings()])


def read_summaries(c: sa.Connection, session: Session, limit: int) -> tuple[list[Any], int]:
    """At most `limit` task summaries (rows of SUMMARY's columns) of a session, in creation
    order, and how many tasks it has. When it has more, every unfinished task comes first
    (those are what a client must not lose), then the newest finished ones."""
    total = session.task_count
    if limit == 0:
        return [], total
    rows: list[Any] = []
    if total <= limit:  # the common case: one query (and the count is only a hint)
        cursor = driver_rows(c, _SUMMARIES, (session.id, limit + 1))
        try:
            rows = [Summary._make(r) for r in cursor]
        finally:
            cursor.close()
        total = len(rows)
    if total > limit:
        in_session = tasks.c.session_id == session.id
        if len(rows) > limit:
            count = sa.select(sa.func.count()).select_from(tasks).where(in_session)
            total = c.execute(count).scalar_one()
        rows = list(
            c.execute(
                sa.select(*SUMMARY)
                .where(in_session, tasks.c.status.not_in(TERMINAL_VALUES))
                .order_by(tasks.c.created_at, tasks.c.id)
                .limit(limit)
            )
        )
        if len(rows) < limit:
            rows += c.execute(
                sa.select(*SUMMARY)
                .where(in_session, tasks.c.status.in_(TERMINAL_VALUES))
                .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
                .limit(limit - len(rows))
            )
    rows.sort(key=lambda r: (r.created_at, r.id))
    return rows, total


def read_all_summaries(c: sa.Connection, session_id: str, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` task summaries of a session (rows of SUMMARY's columns, in no order)."""
    cursor = driver_rows(c, _SUMMARIES, (session_id, limit))
    try:
        return list(cursor)
    finally:
        cursor.close()


def read_brief_rows(c: sa.Connection, session_id: str, owner: str) -> tuple[Session, list[Any]]:
    """The owner's session and its tasks as brief rows, in creation order: SUMMARY's
    columns, then the input's stored JSON if it is at most BRIEF_INPUT_BYTES (else None)."""
    session = read_session(c, session_id, owner)
    rows = c.execute(
        sa.select(*_BRIEF)
        .where(tasks.c.session_id == session_id)
        .order_by(tasks.c.created_at, tasks.c.id)
    ).all()
    return session, list(rows)


def count_in_session(c: sa.Connection, session_id: str, task_ids: set[str]) -> int:
    """How many of these ids are tasks of this session."""
    return int(
        c.execute(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.session_id == session_id, tasks.c.id.in_(task_ids))
        ).scalar_one()
    )


def _one_task_row(c: sa.Connection, task_id: str) -> Task:
    row = driver_sql(c, _TASK_BY_ID, (task_id,)).mappings().first()
    if row is None:
        raise NotFound("task not found")
    return task_of(row)


# Built once, with bound parameters: the runtime reads a task at each start, and building
# the statement cost more than running it.
_TASK = sa.select(tasks).where(tasks.c.id == sa.bindparam("id"))
_OWNED_TASK = _TASK.join(sessions, sessions.c.id == tasks.c.session_id).where(
    sessions.c.owner == sa.bindparam("owner")
)
_CHILDREN = (
    sa.select(tasks.c.id)
    .where(tasks.c.parent_id == sa.bindparam("id"))
    .order_by(tasks.c.created_at, tasks.c.id)
)


class Tasks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def snapshot(self, session_id: str, owner: str) -> tuple[Session, list[Task]]:
        """The session (with its head seq) and every task, read in one consistent snapshot."""
        return await self.db.read(lambda c: read_tree(c, session_id, owner))

    async def task_row(self, task_id: str) -> Task:
        """The runtime's read of a task: its row, without its children (a batch parent has
        thousands), read on the event loop on SQLite (a primary-key lookup costs less than
        the hand-off to a reader thread)."""
        return await self.db.read(lambda c: _one_task_row(c, task_id), inline=True)

    async def task_exists(self, task_id: str) -> bool:
        q = sa.select(tasks.c.id).where(tasks.c.id == task_id)
        return await self.db.read(lambda c: c.execute(q).first() is not None, inline=True)

    async def request_hash(self, task_id: str) -> str | None:
        """The fingerprint of the request that started a task under an Idempotency-Key."""
        q = sa.select(tasks.c.request_hash).where(tasks.c.id == task_id)
        found: str | None = await self.db.read(lambda c: c.scalar(q))
        return found

    async def task(self, task_id: str, owner: str | None) -> Task:
        """A task and its direct children. owner=None is for the runtime's own reads."""
        query, params = (
            (_TASK, {"id": task_id})
            if owner is None
            else (_OWNED_TASK, {"id": task_id, "owner": owner})
        )

        def read(c: sa.Connection) -> Task:
            row = c.execute(query, params).mappings().first()
            if row is None:
                raise NotFound("task not found")
            t = task_of(row)
            t.children = [r[0] for r in c.execute(_CHILDREN, {"id": task_id})]
            return t

        return await self.db.read(read)

    async def subtree(self, task_id: str) -> list[Task]:
        """The task and all its descendants, parents before children."""

        def read(c: sa.Connection) -> list[Task]:
            q = sa.select(tasks).where(tasks.c.id == task_id)
            out = [task_of(r) for r in c.execute(q).mappings()]
            frontier = [t.id for t in out]
            while frontier:
                q = sa.select(tasks).where(tasks.c.parent_id.in_(frontier))
                found = [task_of(r) for r in c.execute(q).mappings()]
                out.extend(found)
                frontier = [t.id for t in found]
            return out

        return await self.db.read(read)

    async def steps_of(self, task_id: str) -> dict[int, tuple[str, str]]:
        """The outcomes recorded for a task's steps: n -> (name, encoded outcome)."""
        q = sa.select(steps.c.n, steps.c.name, steps.c.output).where(steps.c.task_id == task_id)
        return await self.db.read(lambda c: {r[0]: (r[1], r[2]) for r in c.execute(q)})

    async def unfinished(self) -> list[Task]:
        q = (
            sa.select(tasks)
            .where(tasks.c.status.not_in(TERMINAL_VALUES))
            .order_by(tasks.c.created_at)
        )
        return await self.db.read(lambda c: [task_of(r) for r in c.execute(q).mappings()])
