"""The per-session event log: group-committed appends, reads after a cursor.

Every append goes through one writer loop. It takes everything pending (from all tasks and
sessions) and commits it in one transaction: per session it locks the session row, drops
appends whose idempotency key is already in the log, allocates the next seqs
(`head_seq + 1 ..`), inserts the events and applies the task-row changes that ride on them.
Only after the commit are the events handed to listeners (the live hub, child waiters), so
nothing is delivered that is not durable, and seqs are gapless in commit order. The key of
an append marked `fresh` (its task's body never ran before) is not looked up: it cannot be
there, and the unique index on (session, key) refuses it if it were.

One caller's mistake costs nobody else anything:
- each caller waits on a future of its own (or, queueing without waiting, is told its own
  errors), so a caller that is cancelled while it waits cancels only its own wait, never
  the batch or the other callers' waits;
- a batch whose transaction fails is committed again session by session, and a session's
  appends are then split in halves (keeping their order) until the append that fails is
  alone: it alone gets the error, everything else commits;
- a failure of the database itself (disk full, I/O error) is not bisected: every append of
  the batch fails with StorageUnavailable, and each emitter hears of it;
- appends that share a `Chain` (a task's, between two of its flushes) commit as a prefix:
  once one of them fails, each later one is refused with that error, so the log never holds
  what a task did after something it did first was lost.

Here: the writer loop, batching and isolating failures. What an append is: append.py; what a
batch writes: plan.py; the statements' SQL, from db/schema.py's tables: statements.py; the
queries: queries.py. Statements that must commit with the events (on a shared Postgres database,
the NOTIFY to other processes: pg_notify.py) are commit hooks (`add_commit_hook`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.pg_writer import Rows, Stmt
from tether.errors import StorageUnavailable
from tether.events.append import Append, Chain, check_values, fail
from tether.events.mirror import Mirror
from tether.events.plan import ROW_BYTES, Plan
from tether.events.queries import (
    page_is_full,
    read_after,
    read_before,
    read_keyed,
    read_task_events,
)
from tether.events.statements import LogSql
from tether.model import Event, TaskStatus

__all__ = [
    "ROW_BYTES",
    "Append",
    "Chain",
    "CommitHook",
    "EventLog",
    "Listener",
    "is_conflict",
    "is_storage_failure",
    "page_is_full",
    "read_after",
    "read_before",
    "read_task_events",
    "storage_error",
]

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
_GATHER_TURNS = 8


Listener = Callable[[str, list[Event]], None]
"""Told of each commit after it: (session id, its committed events)."""

CommitHook = Callable[[dict[str, list[Event]]], Iterable[Stmt]]
"""Statements that commit in the transaction of the log's writes, given each session it
wrote to and the events it appends there, in seq order (on Postgres: the NOTIFY to the
other processes)."""


def _stopped_error() -> StorageUnavailable:
    return StorageUnavailable("the event log is stopped (server stopping)")


CONFLICT_RETRIES = 5
_CONFLICT_STATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def is_conflict(exc: BaseException) -> bool:
    """Postgres aborted the transaction to break a deadlock or a serialization conflict with
    another transaction: nothing of it happened, and running it again can succeed."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _CONFLICT_STATES


def is_storage_failure(exc: BaseException) -> bool:
    """The database itself failed (disk full, I/O error, connection lost), as opposed to one
    append it refused (a constraint, a value it cannot store)."""
    if isinstance(exc, sa.exc.OperationalError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def storage_error(exc: BaseException) -> StorageUnavailable:
    reason = getattr(exc, "orig", None) or exc
    return StorageUnavailable(
        f"the server could not write to its database ({reason}); nothing was recorded, "
        "try again later"
    )


class EventLog:
    def __init__(self, db: Database, retention: int = 0) -> None:
        self.db = db
        self.sql = LogSql(pg=not db.sqlite)
        self.retention = retention
        self._listeners: list[Listener] = []
        self._pending: list[Append] = []
        self._waiters: list[tuple[asyncio.Future[None], list[Append]]] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0
        self.conflicts = 0  # transactions Postgres aborted (deadlock, serialization) and rerun
        self._commit_hooks: list[CommitHook] = []
        # The sessions streams read, kept in memory (only where this process is the only
        # writer): told of each commit before any listener.
        self.mirror: Mirror | None = None

    def add_listener(self, listener: Listener) -> None:
        """Hand `listener` every commit's events (per session, in seq order), after the
        commit: the live hub, the runtime's waiters, the shared database's feed."""
        self._listeners.append(listener)

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Run `hook`'s statements in each commit's transaction, after the log's writes:
        they commit with the events, or not at all."""
        self._commit_hooks.append(hook)

    # -- writing -------------------------------------------------------------------------

    def start(self) -> None:
        self._closing = False
        self._runner = asyncio.create_task(self._run(), name="tether-log-writer")

    async def stop(self) -> None:
        """Commit what is pending, then stop the writer (never in the middle of a commit:
        on Postgres a commit's statements run on this loop)."""
        runner = self._runner
        if runner is None:
            return
        self._closing = True
        self._wake.set()
        # Shielded: a stop that is itself cancelled still lets the pending batch land.
        await asyncio.shield(runner)
        self._runner = None

    @property
    def _stopped(self) -> bool:
        return self._runner is None or self._runner.done()

    def enqueue(self, append: Append) -> None:
        """Queue an append without waiting for it (the hot path of `ctx.emit`). If it cannot
        be committed, its chain holds the error before any later waiter is woken."""
        check_values(append)
        if self._stopped:
            fail(append, _stopped_error())
            return
        self._pending.append(append)
        self._wake.set()

    def submit(self, append: Append) -> asyncio.Future[None]:
        """Queue an append. The returned future is this caller's alone: it resolves once the
        append is committed (or dropped as a duplicate) and fails with the append's own
        error. Cancelling it cancels nobody else's wait."""
        return self.submit_many((append,))

    def submit_many(self, appends: Iterable[Append]) -> asyncio.Future[None]:
        """Like `submit`, for several; with none, a barrier: it resolves once everything
        queued before it has been committed or refused."""
        batch = list(appends)
        for a in batch:
            check_values(a)
            a.event = a.error = None  # an append submitted again (a retry) starts afresh
        done = asyncio.get_running_loop().create_future()
        if self._stopped:
            done.set_exception(_stopped_error())
            return done
        self._pending.extend(batch)
        self._waiters.append((done, batch))
        self._wake.set()
        return done

    async def append(self, *appends: Append) -> list[Event | None]:
        """Append and wait for the commit. Returns each event, or None where it was dropped;
        raises the first append's error if one failed."""
        await self.submit_many(appends)
        return [a.event for a in appends]

    async def _run(self) -> None:
        while True:
            if self._closing and not self._pending and not self._waiters:
                return
            await self._wake.wait()
            # A few turns of the loop first, while they bring more: what is ready to run
            # queues its appends (a sub-agent started by this one, its first events) and
            # they join the same commit.
            for _ in range(_GATHER_TURNS):
                queued = len(self._pending)
                await asyncio.sleep(0)
                if len(self._pending) == queued:
                    break
            self._wake.clear()
            if not self._pending and not self._waiters:
                continue
            batch, self._pending = self._pending, []
            waiters, self._waiters = self._waiters, []
            try:
                for i in range(0, len(batch), MAX_BATCH):
                    await self._commit_isolated(batch[i : i + MAX_BATCH])
            except Exception as exc:
                log.exception("event log writer failed")
                for a in batch:
                    if a.event is None and a.error is None:
                        fail(a, exc)
            for done, appends in waiters:
                if done.done():  # its caller stopped waiting
                    continue
                error = next((a.error for a in appends if a.error is not None), None)
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    async def _commit_isolated(self, batch: list[Append]) -> None:
        """Commit batch; if its transaction fails, find the appends that fail it and commit
        the rest, in order. Each append ends with `event` set, or dropped, or `error` set.
        A transaction that Postgres aborted to break a deadlock or a serialization conflict
        with another process is run again, whole."""
        try:
            for attempt in range(CONFLICT_RETRIES + 1):
                try:
                    committed = await self._commit(batch)
                    break
                except Exception as exc:
                    if attempt == CONFLICT_RETRIES or not is_conflict(exc):
                        raise
                    self.conflicts += 1
                    log.info("event log: %s; committing the batch again", getattr(exc, "orig", exc))
                    await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        except Exception as exc:  # noqa: BLE001 - sorted out below
            if is_storage_failure(exc):
                log.error("event log: the database refused a write: %s", exc)
                err = storage_error(exc)
                for a in batch:
                    fail(a, err)
                return
            if len(batch) == 1:
                log.warning("event log: refused one %r event: %r", batch[0].type, exc)
                fail(batch[0], exc)
                return
            sessions_in = list(dict.fromkeys(a.session_id for a in batch))
            if len(sessions_in) > 1:
                for sid in sessions_in:
                    await self._commit_isolated([a for a in batch if a.session_id == sid])
            else:
                half = len(batch) // 2
                await self._commit_isolated(batch[:half])
                await self._commit_isolated(batch[half:])
            return
        self.commits += 1
        self._publish(committed)

    def _publish(self, committed: dict[str, list[Event]]) -> None:
        for session_id, evs in committed.items():
            for listener in self._listeners:
                try:
                    listener(session_id, evs)
                except Exception:
                    log.exception("event listener failed")

    async def _commit(self, batch: list[Append]) -> dict[str, list[Event]]:
        """One transaction, and a fixed number of statements however many sessions the
        batch touches (fifty streaming turns are fifty sessions): their rows are locked in
        one statement, in id order (so two writers cannot deadlock), the keys and task
        statuses are read in one each, and the inserts and updates go as executemany. On
        Postgres the reads are one round trip and the writes another (db/pg_writer.py)."""
        by_session: dict[str, list[Append]] = {}
        for a in batch:
            by_session.setdefault(a.session_id, []).append(a)
        sql = self.sql
        locks = sql.lock_sessions(sorted(by_session))
        keys = sql.existing_keys(
            [(a.session_id, a.key) for a in batch if a.key is not None and not a.fresh]
        )
        statuses = sql.statuses(
            {a.task_id for a in batch} | {a.parent_task_id for a in batch if a.new_task}
        )
        retention, hooks = self.retention, self._commit_hooks
        out: dict[str, list[Event]] = {}
        plans: list[Plan] = []

        def then(rows: Rows) -> list[Stmt]:
            # With the sessions locked; the statements it returns commit with the reads.
            out.clear()
            now = time.time()
            heads = {r[0]: (r[1], r[2]) for res in rows[: len(locks)] for r in res}
            rest = rows[len(locks) :]
            seen = {(r[0], r[1]) for res in rest[: len(keys)] for r in res}
            status_of = {r[0]: TaskStatus(r[1]) for res in rest[len(keys) :] for r in res}
            plan = Plan(sql)
            plans[:] = [plan]
            for session_id, items in by_session.items():
                if session_id not in heads:
                    # Dropped (each append's event stays None) rather than failing the
                    # batch: one caller's bad session must not cost others their appends.
                    log.warning("dropped %d appends to missing session %s", len(items), session_id)
                    continue
                evs = plan.add(session_id, items, heads[session_id], seen, status_of, now)
                if evs:
                    out[session_id] = evs
            writes = plan.statements(retention)
            if hooks and out:
                for hook in hooks:
                    writes.extend(hook(out))
            return writes

        try:
            await self.db.transact([*locks, *keys, *statuses], then)
        except BaseException:
            for a in batch:  # rolled back: nothing of it happened
                a.event = None
            raise
        if self.mirror is not None and plans:
            self.mirror.commit(plans[0], out)
        return out

    # -- reading -------------------------------------------------------------------------

    async def read_keyed(self, session_id: str, prefix: str) -> list[tuple[str, Event]]:
        """The events whose key starts with prefix, in order, with their keys."""
        return await self.db.read(lambda c: read_keyed(c, session_id, prefix))

    async def read_after(
        self, session_id: str, after: int, limit: int, max_bytes: int | None = None
    ) -> list[Event]:
        return await self.db.read(lambda c: read_after(c, session_id, after, limit, max_bytes))
