"""Reads of sessions and tasks, always scoped to their owner. (Events: `tether.events.log`.)"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database, driver_sql
from tether.db.schema import approvals, events, files, sessions, steps, tasks
from tether.errors import Conflict, NotFound
from tether.model import TERMINAL, Session, Task, TaskStatus, escape_line_breakers


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
    return Session(
        row.id, row.owner, row.title, row.created_at, row.head_seq, row.low_seq, row.task_count
    )


def _with_children(found: list[Task]) -> list[Task]:
    by_id = {t.id: t for t in found}
    for t in found:
        if t.parent_id in by_id:
            by_id[t.parent_id].children.append(t.id)
    return found


def read_session(c: sa.Connection, session_id: str, owner: str) -> Session:
    row = c.execute(
        sa.select(sessions).where(sessions.c.id == session_id, sessions.c.owner == owner)
    ).first()
    if row is None:
        raise NotFound("session not found")
    return _session(row)


# What a stream's snapshot says of each task: its status, not its input or result.
_SUMMARY = (
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
_SNAPSHOT_MESSAGE = 300


def read_task_summaries(
    c: sa.Connection, session: Session, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """At most `limit` task summaries of a session, in creation order, and how many tasks it
    has. When it has more, every unfinished task comes first (those are what a client must
    not lose), then the newest finished ones."""
    terminal = [s.value for s in TERMINAL]
    in_session = tasks.c.session_id == session.id
    total = session.task_count
    if limit == 0:
        return [], total
    rows = []
    if total <= limit:  # the common case: one query (and the count is only a hint)
        rows = list(c.execute(sa.select(*_SUMMARY).where(in_session).limit(limit + 1)))
        total = len(rows)
    if total > limit:
        if len(rows) > limit:
            total = c.scalar(sa.select(sa.func.count()).select_from(tasks).where(in_session))
        rows = list(
            c.execute(
                sa.select(*_SUMMARY)
                .where(in_session, tasks.c.status.not_in(terminal))
                .order_by(tasks.c.created_at, tasks.c.id)
                .limit(limit)
            )
        )
        if len(rows) < limit:
            rows += c.execute(
                sa.select(*_SUMMARY)
                .where(in_session, tasks.c.status.in_(terminal))
                .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
                .limit(limit - len(rows))
            )
    rows.sort(key=lambda r: (r.created_at, r.id))
    out = [
        {
            "id": r.id,
            "session_id": session.id,
            "parent_id": r.parent_id,
            "agent": r.agent,
            "status": r.status,
            "progress": None if r.progress_m is None else {"n": r.progress_n, "m": r.progress_m},
            "error": _short_error(_loads(r.error)),
            "created_at": r.created_at,
            "started_at": r.started_at,
            "ended_at": r.ended_at,
            "last_seq": r.last_seq,
            "children": [],
        }
        for r in rows
    ]
    by_id = {t["id"]: t for t in out}
    for t in out:
        if t["parent_id"] in by_id:
            by_id[t["parent_id"]]["children"].append(t["id"])
    return out, total


def _short_error(error: Any) -> Any:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
        if len(message) > _SNAPSHOT_MESSAGE:
            return {**error, "message": message[:_SNAPSHOT_MESSAGE] + "…"}
    return error


def read_snapshot(c: sa.Connection, session_id: str, owner: str) -> tuple[Session, list[Task]]:
    session = read_session(c, session_id, owner)
    res = c.execute(
        sa.select(tasks)
        .where(tasks.c.session_id == session_id)
        .order_by(tasks.c.created_at, tasks.c.id)
    )
    return session, _with_children([_task(r) for r in res])


BRIEF_INPUT_BYTES = 2048
_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C, ensure_ascii=False


def _num(x: float | None) -> str:
    return "null" if x is None else repr(x)


# A brief tree row: a snapshot summary's columns and the input if it is small.
_BRIEF = (
    *_SUMMARY,
    sa.case((sa.func.length(tasks.c.input) <= BRIEF_INPUT_BYTES, tasks.c.input), else_=None),
)


def read_brief_tree(c: sa.Connection, session_id: str, owner: str) -> tuple[Session, str]:
    """The session and its task tree as JSON text, without results and without inputs over
    BRIEF_INPUT_BYTES (null): what a page polling ten thousand tasks needs. The stored JSON
    of inputs and errors is spliced in as it is, never decoded: this read is on the path of
    every reload of a big session."""
    session = read_session(c, session_id, owner)
    rows = c.execute(
        sa.select(*_BRIEF)
        .where(tasks.c.session_id == session_id)
        .order_by(tasks.c.created_at, tasks.c.id)
    ).all()
    q = _json_string
    sid = q(session_id)
    heads: dict[str, str] = {}
    kids: dict[str | None, list[str]] = {}
    for tid, parent, agent, status, pn, pm, error, created, started, ended, last, inp in rows:
        progress = "null" if pm is None else f'{{"n":{pn},"m":{pm}}}'
        heads[tid] = (
            f'{{"id":{q(tid)},"session_id":{sid},"parent_id":'
            f'{"null" if parent is None else q(parent)},"agent":{q(agent)},'
            f'"input":{inp or "null"},"status":"{status}","progress":{progress},'
            f'"result":null,"error":{error or "null"},"created_at":{created!r},'
            f'"started_at":{_num(started)},"ended_at":{_num(ended)},"last_seq":{last},'
            f'"children":['
        )
        kids.setdefault(parent, []).append(tid)

    def text(tid: str) -> str:
        return heads[tid] + ",".join(text(k) for k in kids.get(tid, ())) + "]}"

    roots = [r[0] for r in rows if r[1] is None or r[1] not in heads]
    out = "[" + ",".join(text(t) for t in roots) + "]"
    return session, out if out.isascii() else escape_line_breakers(out)


# A task row by id, as driver SQL: the runtime reads one several times per delegation, and
# compiling the Core statement cost more than the read.
_TASK_BY_ID = f"SELECT {', '.join(c.name for c in tasks.c)} FROM tether_tasks WHERE id = ?"


def _one_task_row(c: sa.Connection, task_id: str) -> Task:
    row = driver_sql(c, _TASK_BY_ID, (task_id,)).first()
    if row is None:
        raise NotFound("task not found")
    return _task(row)


def _one_task(c: sa.Connection, query: Any, task_id: str) -> Task:
    row = c.execute(query).first()
    if row is None:
        raise NotFound("task not found")
    return _task(row)


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_session(self, owner: str, title: str) -> Session:
        s = Session(new_id("s"), owner, title, time.time(), 0, 0)

        def tx(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(sessions).values(
                    id=s.id, owner=owner, title=title, created_at=s.created_at
                )
            )

        await self.db.write(tx)
        return s

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
        return await self.db.read(lambda c: [_session(r) for r in c.execute(q)])

    async def rename_session(self, session_id: str, owner: str, title: str) -> Session:
        def tx(conn: sa.Connection) -> int:
            done = conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id, sessions.c.owner == owner)
                .values(title=title)
            )
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
        unfinished = [s.value for s in TaskStatus if s not in TERMINAL]

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
                .where(tasks.c.session_id == session_id, tasks.c.status.in_(unfinished))
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
            for table in (approvals, events, steps, files, tasks):
                conn.execute(sa.delete(table).where(table.c.session_id == session_id))
            conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))

        await self.db.write(tx)

    def _checkpoint(self) -> None:
        with self.db.writer.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)")

    async def session(self, session_id: str, owner: str) -> Session:
        q = sa.select(sessions).where(sessions.c.id == session_id, sessions.c.owner == owner)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            raise NotFound("session not found")
        return _session(row)

    async def brief_tree(self, session_id: str, owner: str) -> tuple[Session, str]:
        return await self.db.read(lambda c: read_brief_tree(c, session_id, owner))

    async def snapshot(self, session_id: str, owner: str) -> tuple[Session, list[Task]]:
        """The session (with its head seq) and every task, read in one consistent snapshot."""
        return await self.db.read(lambda c: read_snapshot(c, session_id, owner))

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
        return await self.db.read(lambda c: c.scalar(q))

    async def task(self, task_id: str, owner: str | None) -> Task:
        """A task and its direct children. owner=None is for the runtime's own reads."""
        query = sa.select(tasks).where(tasks.c.id == task_id)
        if owner is not None:
            query = query.join(sessions, sessions.c.id == tasks.c.session_id).where(
                sessions.c.owner == owner
            )

        def read(c: sa.Connection) -> Task:
            t = _one_task(c, query, task_id)
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

    async def steps_of(self, task_id: str) -> dict[int, tuple[str, str]]:
        """The outcomes recorded for a task's steps: n -> (name, encoded outcome)."""
        q = sa.select(steps.c.n, steps.c.name, steps.c.output).where(steps.c.task_id == task_id)
        return await self.db.read(lambda c: {r[0]: (r[1], r[2]) for r in c.execute(q)})

    async def unfinished(self) -> list[Task]:
        terminal = [s.value for s in TERMINAL]
        q = sa.select(tasks).where(tasks.c.status.not_in(terminal)).order_by(tasks.c.created_at)
        return await self.db.read(lambda c: [_task(r) for r in c.execute(q)])

    # -- conversations and approvals ---------------------------------------------------------

    async def turn_history(
        self, session_id: str, before: float, task_id: str, agents: list[str]
    ) -> list[Any]:
        """The messages of the session's completed model turns before this one, in order."""
        q = (
            sa.select(tasks.c.result)
            .where(
                tasks.c.session_id == session_id,
                tasks.c.parent_id.is_(None),
                tasks.c.status == TaskStatus.completed.value,
                tasks.c.agent.in_(agents),
                sa.or_(
                    tasks.c.created_at < before,
                    sa.and_(tasks.c.created_at == before, tasks.c.id < task_id),
                ),
            )
            .order_by(tasks.c.created_at, tasks.c.id)
        )
        rows = await self.db.read(lambda c: [r[0] for r in c.execute(q)])
        out: list[Any] = []
        for text in rows:
            result = _loads(text)
            if isinstance(result, dict) and isinstance(result.get("messages"), list):
                out.extend(result["messages"])
        return out

    async def latest_turn(self, session_id: str, agents: list[str]) -> Task | None:
        q = (
            sa.select(tasks)
            .where(
                tasks.c.session_id == session_id,
                tasks.c.parent_id.is_(None),
                tasks.c.agent.in_(agents),
            )
            .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
            .limit(1)
        )
        row = await self.db.read(lambda c: c.execute(q).first())
        return None if row is None else _task(row)

    async def create_approval(
        self, aid: str, task_id: str, session_id: str, tool: str, args: str
    ) -> None:
        """Record a request; one that exists (a re-run of the step) is left as it is."""

        def tx(conn: sa.Connection) -> None:
            found = conn.execute(sa.select(approvals.c.id).where(approvals.c.id == aid)).first()
            if found is None:
                conn.execute(
                    sa.insert(approvals).values(
                        id=aid,
                        task_id=task_id,
                        session_id=session_id,
                        tool=tool,
                        args=args,
                        status="pending",
                        requested_at=time.time(),
                    )
                )

        await self.db.write(tx)

    async def approvals_of(self, task_id: str, owner: str) -> list[dict[str, Any]]:
        await self.task(task_id, owner)
        q = (
            sa.select(approvals)
            .where(approvals.c.task_id == task_id)
            .order_by(approvals.c.requested_at, approvals.c.id)
        )
        return await self.db.read(lambda c: [_approval(r) for r in c.execute(q)])

    async def answer_approval(
        self, task_id: str, aid: str, user: str, decision: str, note: str | None
    ) -> dict[str, Any]:
        """Answer once: NotFound for an unknown approval (or task not yours), Conflict for
        one already answered or whose task has ended."""
        task = await self.task(task_id, user)
        status = "approved" if decision == "approve" else "denied"

        def tx(conn: sa.Connection) -> dict[str, Any]:
            row = (
                conn.execute(
                    sa.select(approvals).where(
                        approvals.c.id == aid, approvals.c.task_id == task_id
                    )
                )
            ).first()
            if row is None:
                raise NotFound("approval not found")
            if row.status != "pending":
                raise Conflict(
                    f"this approval was already answered ({row.status})", approval=_approval(row)
                )
            if task.status.terminal:
                raise Conflict(
                    f"the task has already ended ({task.status.value}); nothing waits for an answer"
                )
            now = time.time()
            done = conn.execute(
                sa.update(approvals)
                .where(approvals.c.id == aid, approvals.c.status == "pending")
                .values(status=status, note=note, answered_at=now, answered_by=user)
            )
            if done.rowcount != 1:  # answered by a racing request in the meantime
                won = conn.execute(sa.select(approvals).where(approvals.c.id == aid)).one()
                raise Conflict(
                    f"this approval was already answered ({won.status})", approval=_approval(won)
                )
            return _approval(row) | {
                "status": status,
                "decision": decision,
                "note": note,
                "answered_at": now,
                "answered_by": user,
            }

        return await self.db.write(tx)

    async def answered_approvals_of_unfinished_tasks(self) -> list[dict[str, Any]]:
        terminal = [s.value for s in TERMINAL]
        q = sa.select(approvals).where(
            approvals.c.status != "pending",
            approvals.c.task_id.in_(sa.select(tasks.c.id).where(tasks.c.status.not_in(terminal))),
        )
        return await self.db.read(lambda c: [_approval(r) for r in c.execute(q)])

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

    async def pending_approvals(self, owner: str) -> dict[str, int]:
        """Per session of the owner: how many approvals wait for an answer."""
        terminal = [s.value for s in TERMINAL]
        q = (
            sa.select(approvals.c.session_id, sa.func.count())
            .join(sessions, sessions.c.id == approvals.c.session_id)
            .join(tasks, tasks.c.id == approvals.c.task_id)
            .where(
                sessions.c.owner == owner,
                approvals.c.status == "pending",
                tasks.c.status.not_in(terminal),
            )
            .group_by(approvals.c.session_id)
        )
        return await self.db.read(lambda c: {r[0]: int(r[1]) for r in c.execute(q)})


def _approval(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "task_id": row.task_id,
        "session_id": row.session_id,
        "tool": row.tool,
        "args": _loads(row.args),
        "status": row.status,
        "decision": {"approved": "approve", "denied": "deny"}.get(row.status),
        "note": row.note,
        "requested_at": row.requested_at,
        "answered_at": row.answered_at,
        "answered_by": row.answered_by,
    }
