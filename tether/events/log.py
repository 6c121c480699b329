"""The per-session event log: group-committed appends, reads after a cursor.

Every append goes through one writer loop. It takes everything pending (from all tasks and
sessions) and commits it in one transaction: per session it locks the session row, drops
appends whose idempotency key is already in the log, allocates the next seqs
(`head_seq + 1 ..`), inserts the events and applies the task-row changes that ride on them.
Only after the commit are the events handed to listeners (the live hub, child waiters), so
nothing is delivered that is not durable, and seqs are gapless in commit order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.schema import events, sessions, tasks
from tether.model import TERMINAL, Event, TaskStatus

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
_IN_CHUNK = 500  # bound on bound parameters in one IN (...)


@dataclass(slots=True)
class Append:
    """One event to append, and the task-row changes that apply only if the event is new."""

    session_id: str
    task_id: str | None
    parent_task_id: str | None
    type: str
    data: str  # JSON text
    key: str | None = None
    new_task: dict[str, Any] | None = None
    task_values: dict[str, Any] | None = None
    # A status transition is dropped, with its event, once the task is terminal.
    status: TaskStatus | None = None
    event: Event | None = field(default=None)


Listener = Callable[[str, list[Event]], None]


class EventLog:
    def __init__(self, db: Database, retention: int = 0) -> None:
        self.db = db
        self.retention = retention
        self.listeners: list[Listener] = []
        self._pending: list[Append] = []
        self._batch_done: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.commits = 0

    # -- writing -------------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="tether-log-writer")

    async def stop(self) -> None:
        """Commit what is pending, then stop the writer."""
        if self._runner is None:
            return
        if self._pending:
            await self.submit_many([])
        self._runner.cancel()
        try:
            await self._runner
        except asyncio.CancelledError:
            pass
        self._runner = None

    def submit(self, append: Append) -> asyncio.Future[None]:
        """Queue an append; the future resolves once its batch has committed."""
        self._pending.append(append)
        return self._current_batch()

    def submit_many(self, appends: Iterable[Append]) -> asyncio.Future[None]:
        self._pending.extend(appends)
        return self._current_batch()

    async def append(self, *appends: Append) -> list[Event | None]:
        """Append and wait for the commit. Returns each event, or None where it was dropped."""
        await self.submit_many(appends)
        return [a.event for a in appends]

    def _current_batch(self) -> asyncio.Future[None]:
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        self._wake.set()
        return self._batch_done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            batch, self._pending = self._pending, []
            done, self._batch_done = self._batch_done, None
            error: BaseException | None = None
            for i in range(0, len(batch), MAX_BATCH):
                try:
                    committed = await self._commit(batch[i : i + MAX_BATCH])
                except Exception as exc:  # noqa: BLE001 - handed to every waiter
                    log.exception("event log commit failed")
                    error = exc
                    continue
                self.commits += 1
                self._publish(committed)
            if done is not None and not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _publish(self, committed: dict[str, list[Event]]) -> None:
        for session_id, evs in committed.items():
            for listener in self.listeners:
                try:
                    listener(session_id, evs)
                except Exception:  # noqa: BLE001 - one listener must not stop the log
                    log.exception("event listener failed")

    async def _commit(self, batch: list[Append]) -> dict[str, list[Event]]:
        by_session: dict[str, list[Append]] = {}
        for a in batch:
            by_session.setdefault(a.session_id, []).append(a)
        out: dict[str, list[Event]] = {}
        now = time.time()
        async with self.db.writer.begin() as conn:
            for session_id, items in by_session.items():
                evs = await self._commit_session(conn, session_id, items, now)
                if evs:
                    out[session_id] = evs
        return out

    async def _commit_session(
        self, conn: Any, session_id: str, items: list[Append], now: float
    ) -> list[Event]:
        row = (
            await conn.execute(
                sa.select(sessions.c.head_seq, sessions.c.low_seq)
                .where(sessions.c.id == session_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            # Dropped (each append's event stays None) rather than failing the whole batch:
            # one caller's bad session must not cost other sessions their appends.
            log.warning("dropped %d appends to missing session %s", len(items), session_id)
            return []
        head, low = row
        keys = [a.key for a in items if a.key is not None]
        seen = await self._existing_keys(conn, session_id, keys) if keys else set()
        status_of = await self._statuses(
            conn, {a.task_id for a in items} | {a.parent_task_id for a in items if a.new_task}
        )
        accepted: list[Append] = []
        for a in items:
            if a.key is not None and a.key in seen:
                continue
            # Nothing is appended for a task after its terminal status, and a task that has
            # ended starts no children: a straggler of a cancelled task leaves no trace.
            if status_of.get(a.task_id) in TERMINAL:
                continue
            if a.new_task is not None and status_of.get(a.parent_task_id) in TERMINAL:
                continue
            if a.key is not None:
                seen.add(a.key)
            if a.status is not None:
                status_of[a.task_id] = a.status
            accepted.append(a)
        if not accepted:
            return []

        new_tasks = [a.new_task for a in accepted if a.new_task is not None]
        if new_tasks:
            await conn.execute(sa.insert(tasks), new_tasks)
        rows: list[dict[str, Any]] = []
        evs: list[Event] = []
        task_values: dict[str, dict[str, Any]] = {}
        for i, a in enumerate(accepted, start=head + 1):
            ev = Event(i, session_id, a.task_id, a.parent_task_id, a.type, a.data, now)
            a.event = ev
            evs.append(ev)
            rows.append(
                {
                    "session_id": session_id,
                    "seq": i,
                    "task_id": a.task_id,
                    "parent_task_id": a.parent_task_id,
                    "type": a.type,
                    "data": a.data,
                    "ts": now,
                    "key": a.key,
                }
            )
            if a.task_id is not None:
                values = task_values.setdefault(a.task_id, {})
                if a.task_values:
                    values.update(a.task_values)
                if a.status is not None:
                    values["status"] = a.status.value
                values["last_seq"] = i
        await conn.execute(sa.insert(events), rows)
        for task_id, values in task_values.items():
            await conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**values))
        new_head = head + len(accepted)
        new_low = low
        if self.retention and new_head - low > self.retention + max(100, self.retention // 10):
            new_low = new_head - self.retention
            await conn.execute(
                sa.delete(events).where(events.c.session_id == session_id, events.c.seq <= new_low)
            )
        await conn.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(head_seq=new_head, low_seq=new_low)
        )
        return evs

    @staticmethod
    async def _existing_keys(conn: Any, session_id: str, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            res = await conn.execute(
                sa.select(events.c.key).where(
                    events.c.session_id == session_id, events.c.key.in_(chunk)
                )
            )
            found.update(r[0] for r in res)
        return found

    @staticmethod
    async def _statuses(conn: Any, task_ids: set[str | None]) -> dict[str | None, TaskStatus]:
        ids = [t for t in task_ids if t is not None]
        if not ids:
            return {}
        res = await conn.execute(sa.select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(ids)))
        return {r[0]: TaskStatus(r[1]) for r in res}

    # -- reading -------------------------------------------------------------------------

    async def read_after(self, session_id: str, after: int, limit: int) -> list[Event]:
        return await self.db.read(lambda c: read_after(c, session_id, after, limit))


def read_after(c: sa.Connection, session_id: str, after: int, limit: int) -> list[Event]:
    q = (
        sa.select(
            events.c.seq,
            events.c.task_id,
            events.c.parent_task_id,
            events.c.type,
            events.c.data,
            events.c.ts,
        )
        .where(events.c.session_id == session_id, events.c.seq > after)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [Event(r[0], session_id, r[1], r[2], r[3], r[4], r[5]) for r in c.execute(q)]
