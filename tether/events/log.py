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
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.pg_writer import Rows, Stmt
from tether.db.schema import events, sessions
from tether.errors import StorageUnavailable
from tether.events.pg_notify import notify_stmt
from tether.model import EVENT_OVERHEAD, TERMINAL, Event, TaskStatus, events_size

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
_GATHER_TURNS = 8
_IN_CHUNK = 500  # bound on bound parameters in one IN (...)
_TERMINAL = [s.value for s in TERMINAL]
# An Event's columns, in the order Event takes them after its session id.
_EVENT_COLUMNS = (
    events.c.seq,
    events.c.task_id,
    events.c.parent_task_id,
    events.c.type,
    events.c.data,
    events.c.ts,
)

# The columns of a new task row (Runtime._new_task_row makes exactly these).
_NEW_TASK_COLUMNS = (
    "id",
    "session_id",
    "parent_id",
    "agent",
    "input",
    "status",
    "app_version",
    "created_at",
    "follows",
    "request_hash",
)

_NEW_TASK_SET = frozenset(_NEW_TASK_COLUMNS)


def _marks(items: Any) -> str:
    return ", ".join("?" * len(items))


# The task-row columns an append may change. Anything else is a caller's bug, refused at
# submit, not a failed transaction that other callers' events share.
TASK_COLUMNS = frozenset({"progress_n", "progress_m", "result", "error", "started_at", "ended_at"})


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
    error: BaseException | None = field(default=None)
    # For a caller that queued it without waiting (`enqueue`): where it hears of a failure,
    # and what refuses this append if an earlier one of the chain failed.
    chain: Chain | None = field(default=None)
    # Not an event but a step's recorded outcome, (n, name, output, replace): written to
    # tether_steps in the transaction of the events queued before it; a record of the step
    # that is there already is kept, unless `replace`.
    step: tuple[int, str, str, bool] | None = None
    # Its key cannot be in the log yet: its task's body has never run before (a replay's
    # is looked up). The log does not look it up; the unique index would still refuse it.
    fresh: bool = False
    # Conversation turns whose branch this event shows (a turn and the turns before it):
    # their rows' `selected_seq` take the event's seq, whatever their status.
    selects: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class Chain:
    """Appends that commit in order, or not at all after the first of them that fails: the
    log records that failure here and refuses every later append of the chain with it."""

    error: BaseException | None = None
    first: Append | None = None  # the append that failed first


def _fail(a: Append, error: BaseException) -> None:
    a.error = error
    chain = a.chain
    if chain is not None and chain.error is None:
        chain.error = error
        chain.first = a


Listener = Callable[[str, list[Event]], None]


def _stopped_error() -> StorageUnavailable:
    return StorageUnavailable("the event log is stopped (server stopping)")


def _check_values(a: Append) -> None:
    if a.new_task is not None and not _NEW_TASK_SET.issuperset(a.new_task):
        unknown = ", ".join(sorted(set(a.new_task) - _NEW_TASK_SET))
        raise ValueError(f"unknown new task fields: {unknown}")
    if a.task_values and not TASK_COLUMNS.issuperset(a.task_values):
        unknown = ", ".join(sorted(set(a.task_values) - TASK_COLUMNS))
        raise ValueError(f"unknown task fields: {unknown}")


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
        self.retention = retention
        self.listeners: list[Listener] = []
        self._pending: list[Append] = []
        self._waiters: list[tuple[asyncio.Future[None], list[Append]]] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0
        self.conflicts = 0  # transactions Postgres aborted (deadlock, serialization) and rerun
        # Set on a shared Postgres database: each commit notifies the other processes.
        self.notify_origin: str | None = None

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
        _check_values(append)
        if self._stopped:
            _fail(append, _stopped_error())
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
            _check_values(a)
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
                        _fail(a, exc)
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
                    _fail(a, err)
                return
            if len(batch) == 1:
                log.warning("event log: refused one %r event: %r", batch[0].type, exc)
                _fail(batch[0], exc)
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
            for listener in self.listeners:
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
        pg = not self.db.sqlite
        locks = _lock_sessions(sorted(by_session), pg)
        keys = _existing_keys(
            [(a.session_id, a.key) for a in batch if a.key is not None and not a.fresh], pg
        )
        statuses = _statuses(
            {a.task_id for a in batch} | {a.parent_task_id for a in batch if a.new_task}
        )
        retention, origin = self.retention, self.notify_origin
        out: dict[str, list[Event]] = {}

        def then(rows: Rows) -> list[Stmt]:
            # With the sessions locked; the statements it returns commit with the reads.
            out.clear()
            now = time.time()
            heads = {r[0]: (r[1], r[2]) for res in rows[: len(locks)] for r in res}
            rest = rows[len(locks) :]
            seen = {(r[0], r[1]) for res in rest[: len(keys)] for r in res}
            status_of = {r[0]: TaskStatus(r[1]) for res in rest[len(keys) :] for r in res}
            plan = _Plan()
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
            if origin is not None and out:
                writes.append(notify_stmt(origin, {sid: evs[-1].seq for sid, evs in out.items()}))
            return writes

        try:
            await self.db.transact([*locks, *keys, *statuses], then)
        except BaseException:
            for a in batch:  # rolled back: nothing of it happened
                a.event = None
            raise
        return out

    # -- reading -------------------------------------------------------------------------

    async def read_keyed(self, session_id: str, prefix: str) -> list[tuple[str, Event]]:
        """The events whose key starts with prefix, in order, with their keys."""
        # A range on the (session_id, key) index: LIKE would not use it on SQLite.
        q = (
            sa.select(events.c.key, *_EVENT_COLUMNS)
            .where(
                events.c.session_id == session_id,
                events.c.key >= prefix,
                events.c.key < prefix + "\U0010ffff",
            )
            .order_by(events.c.seq)
        )

        def read(c: sa.Connection) -> list[tuple[str, Event]]:
            return [
                (r[0], Event(r[1], session_id, r[2], r[3], r[4], r[5], r[6])) for r in c.execute(q)
            ]

        return await self.db.read(read)

    async def read_after(
        self, session_id: str, after: int, limit: int, max_bytes: int | None = None
    ) -> list[Event]:
        return await self.db.read(lambda c: read_after(c, session_id, after, limit, max_bytes))


def _lock_sessions(ids: list[str], pg: bool) -> list[Stmt]:
    """Each session's (id, head_seq, low_seq), its row locked until the commit (Postgres;
    SQLite's writer holds the whole file), in id order: two writers never deadlock here."""
    lock = " FOR UPDATE" if pg else ""
    return [
        (
            f"SELECT id, head_seq, low_seq FROM tether_sessions WHERE id IN ({_marks(chunk)})"
            f" ORDER BY id{lock}",
            tuple(chunk),
        )
        for chunk in _chunks(ids)
    ]


def _existing_keys(keys: list[tuple[str, str]], pg: bool) -> list[Stmt]:
    """Which of these (session, key) pairs are in the log already: rows (session, key)."""
    if not keys:
        return []
    if pg:
        # One lookup of the (session_id, key) index per pair. Postgres plans an IN list
        # of hundreds of keys as a scan of the session's whole index range, which made
        # each commit cost time in proportion to the session's length.
        return [
            (
                "SELECT e.session_id, e.key FROM unnest(?::text[], ?::text[]) AS k(sid, key)"
                " JOIN tether_events e ON e.session_id = k.sid AND e.key = k.key",
                ([sid for sid, _ in keys], [key for _, key in keys]),
            )
        ]
    # `(session_id = ? AND key IN (…)) OR …`: an index search per session on SQLite,
    # where a row-value IN would scan the whole index.
    by_session: dict[str, list[str]] = {}
    for sid, key in keys:
        by_session.setdefault(sid, []).append(key)
    out: list[Stmt] = []
    terms: list[str] = []
    params: list[str] = []
    for sid, ks in by_session.items():
        for chunk in _chunks(ks):
            terms.append(f"(session_id = ? AND key IN ({_marks(chunk)}))")
            params.append(sid)
            params.extend(chunk)
            if len(params) >= _IN_CHUNK:
                out.append(_keys_stmt(terms, params))
                terms, params = [], []
    if terms:
        out.append(_keys_stmt(terms, params))
    return out


def _keys_stmt(terms: list[str], params: list[str]) -> Stmt:
    return "SELECT session_id, key FROM tether_events WHERE " + " OR ".join(terms), tuple(params)


def _statuses(task_ids: set[str | None]) -> list[Stmt]:
    """Rows (id, status) of these tasks."""
    ids = [t for t in task_ids if t is not None]
    return [
        (f"SELECT id, status FROM tether_tasks WHERE id IN ({_marks(chunk)})", tuple(chunk))
        for chunk in _chunks(ids)
    ]


def _prune(session_id: str, low: int, new_low: int) -> list[Stmt]:
    """Retention: events in (low, new_low] leave the log. An event of a task that may
    still run keeps its row (not its data): a replay after a crash must find its key,
    or it would append the event again."""
    in_range = "session_id = ? AND seq > ? AND seq <= ?"
    return [
        (
            f"DELETE FROM tether_events WHERE {in_range} AND (key IS NULL OR task_id IS NULL"
            " OR task_id NOT IN (SELECT id FROM tether_tasks WHERE session_id = ?"
            f" AND status NOT IN ({_marks(_TERMINAL)})))",
            (session_id, low, new_low, session_id, *_TERMINAL),
        ),
        (f"UPDATE tether_events SET data = 'null' WHERE {in_range}", (session_id, low, new_low)),
    ]


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i : i + _IN_CHUNK] for i in range(0, len(items), _IN_CHUNK)]


class _Plan:
    """What one batch writes, gathered session by session, written in a few statements."""

    def __init__(self) -> None:
        self.new_tasks: list[dict[str, Any]] = []
        self.steps: list[tuple[Any, ...]] = []
        self.replaced: list[tuple[Any, ...]] = []
        self.rows: list[tuple[Any, ...]] = []
        self.task_values: dict[str, dict[str, Any]] = {}
        self.sessions: list[dict[str, Any]] = []
        # session -> (old low, new head, its index in self.sessions, tasks that ended)
        self.retention_of: dict[str, tuple[int, int, int, list[str]]] = {}
        # session -> bytes this batch writes for it (its `used_bytes`: tether/quotas.py)
        self.written: dict[str, int] = {}

    def add(
        self,
        session_id: str,
        items: list[Append],
        head_low: tuple[int, int],
        seen: set[tuple[str, str]],
        status_of: dict[str | None, TaskStatus],
        now: float,
    ) -> list[Event]:
        head, low = head_low
        accepted: list[Append] = []
        for a in items:
            if a.chain is not None and a.chain.error is not None:
                a.error = a.chain.error  # an earlier append of its chain failed
                continue
            if a.key is not None and (session_id, a.key) in seen:
                continue
            if a.new_task is not None:
                # Creating a task that exists is a replay (its `task.created` may have been
                # pruned by retention): a no-op, never a constraint failure.
                if a.task_id in status_of:
                    continue
                # A task that has ended starts no children.
                if status_of.get(a.parent_task_id) in TERMINAL:
                    continue
                status_of[a.task_id] = TaskStatus(a.new_task["status"])
            # Nothing is appended for a task after its terminal status (a straggler of a
            # cancelled task leaves no trace), nor for a task that does not exist (a child
            # whose creation was refused because its parent had ended).
            elif a.task_id is not None and status_of.get(a.task_id, TaskStatus.cancelled) in (
                TERMINAL
            ):
                continue
            if a.step is not None:
                n, name, output, replace = a.step
                (self.replaced if replace else self.steps).append(
                    (a.task_id, n, session_id, name, output)
                )
                self.written[session_id] = self.written.get(session_id, 0) + len(output)
                continue
            if a.key is not None:
                seen.add((session_id, a.key))
            if a.status is not None:
                status_of[a.task_id] = a.status
            accepted.append(a)
        if not accepted:
            return []
        new_tasks = [a.new_task for a in accepted if a.new_task is not None]
        self.new_tasks.extend(new_tasks)
        evs: list[Event] = []
        ended: list[str] = []
        written = 0
        for i, a in enumerate(accepted, start=head + 1):
            written += _written(a)
            ev = Event(i, session_id, a.task_id, a.parent_task_id, a.type, a.data, now)
            a.event = ev
            evs.append(ev)
            self.rows.append(
                (session_id, i, a.task_id, a.parent_task_id, a.type, a.data, now, a.key)
            )
            if a.task_id is not None:
                values = self.task_values.setdefault(a.task_id, {})
                if a.task_values:
                    values.update(a.task_values)
                if a.status is not None:
                    values["status"] = a.status.value
                    if a.status in TERMINAL:
                        ended.append(a.task_id)
                values["last_seq"] = i
                if a.new_task is not None:
                    values["created_seq"] = i  # the turn order: see conversation.queue
            for turn in a.selects:
                self.task_values.setdefault(turn, {})["selected_seq"] = i
        self.written[session_id] = self.written.get(session_id, 0) + written
        new_head = head + len(accepted)
        self.sessions.append(
            {"_id": session_id, "_head": new_head, "_low": low, "_tasks": len(new_tasks)}
        )
        self.retention_of[session_id] = (low, new_head, len(self.sessions) - 1, ended)
        return evs

    def statements(self, retention: int) -> list[Stmt]:
        """What the batch writes: a few executemany statements, whatever its size."""
        out: list[Stmt] = []
        if self.new_tasks:
            cols = _NEW_TASK_COLUMNS
            out.append(
                (
                    f"INSERT INTO tether_tasks ({', '.join(cols)}) VALUES ({_marks(cols)})",
                    [tuple(t.get(c) for c in cols) for t in self.new_tasks],
                )
            )
        if self.rows:
            out.append(
                (
                    "INSERT INTO tether_events (session_id, seq, task_id, parent_task_id, type,"
                    " data, ts, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    self.rows,
                )
            )
        for rows, conflict in (
            (self.steps, "NOTHING"),
            (self.replaced, "UPDATE SET name = excluded.name, output = excluded.output"),
        ):
            if rows:
                out.append(
                    (
                        "INSERT INTO tether_steps (task_id, n, session_id, name, output)"
                        f" VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id, n) DO {conflict}",
                        rows,
                    )
                )
        # Task rows: one executemany per shape of change (progress, status, last seq only…).
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for task_id, values in self.task_values.items():
            cols = tuple(sorted(values))
            shapes.setdefault(cols, []).append((*(values[c] for c in cols), task_id))
        for cols, params in shapes.items():
            sets = ", ".join(f"{c} = ?" for c in cols)
            out.append((f"UPDATE tether_tasks SET {sets} WHERE id = ?", params))
        if retention:
            for session_id, (low, new_head, idx, ended) in self.retention_of.items():
                new_low = low
                if new_head - low > retention + max(100, retention // 10):
                    new_low = new_head - retention
                    out.extend(_prune(session_id, low, new_low))
                    self.sessions[idx]["_low"] = new_low
                if ended and new_low:
                    # Rows kept below low_seq for their keys go once their task has ended.
                    out.extend(
                        (
                            "DELETE FROM tether_events WHERE session_id = ? AND seq <= ?"
                            f" AND task_id IN ({_marks(chunk)})",
                            (session_id, new_low, *chunk),
                        )
                        for chunk in _chunks(ended)
                    )
        if self.sessions:
            out.append(
                (
                    "UPDATE tether_sessions SET head_seq = ?, low_seq = ?,"
                    " task_count = task_count + ?, used_bytes = used_bytes + ? WHERE id = ?",
                    [
                        (
                            x["_head"],
                            x["_low"],
                            x["_tasks"],
                            self.written.pop(x["_id"], 0),
                            x["_id"],
                        )
                        for x in self.sessions
                    ],
                )
            )
        if any(self.written.values()):  # a session that got only step records
            out.append(
                (
                    "UPDATE tether_sessions SET used_bytes = used_bytes + ? WHERE id = ?",
                    [(n, sid) for sid, n in self.written.items() if n],
                )
            )
        return out


ROW_BYTES = 64  # what a stored event costs beyond its data (seq, ids, key, index entries)


def _written(a: Append) -> int:
    """The bytes an append stores: its event, and the task input or result riding on it.
    (Retention's pruning is not subtracted: a session's count is what was written.)"""
    n = ROW_BYTES + len(a.data)
    if a.new_task is not None:
        n += len(a.new_task.get("input") or "")
    if a.task_values:
        for column in ("result", "error"):
            value = a.task_values.get(column)
            if isinstance(value, str):
                n += len(value)
    return n


def read_after(
    c: sa.Connection, session_id: str, after: int, limit: int, max_bytes: int | None = None
) -> list[Event]:
    """Up to `limit` events after `after`, in order, stopping early once their data passes
    `max_bytes` (always at least one event), so a page of large events stays bounded."""
    q = (
        sa.select(*_EVENT_COLUMNS)
        .where(
            events.c.session_id == session_id,
            events.c.seq > after,
            # Rows below low_seq are retention's: kept only for their keys, never served.
            events.c.seq > _low_seq(session_id),
        )
        .order_by(events.c.seq)
        .limit(limit)
    )
    return _collect(c.execute(q), session_id, max_bytes)


def read_before(
    c: sa.Connection,
    session_id: str,
    before: int,
    limit: int,
    max_bytes: int | None = None,
    after: int = 0,
) -> list[Event]:
    """The (up to) `limit` events just before seq `before` (and after `after`), in order:
    the tail of the log (before = head + 1) or the page above what a reader already has.
    Stops early, from the newest side, once their data passes `max_bytes` (always at least
    one event)."""
    q = (
        sa.select(*_EVENT_COLUMNS)
        .where(
            events.c.session_id == session_id,
            events.c.seq < before,
            events.c.seq > after,
            events.c.seq > _low_seq(session_id),
        )
        .order_by(events.c.seq.desc())
        .limit(limit)
    )
    out = _collect(c.execute(q), session_id, max_bytes)
    out.reverse()
    return out


def read_task_events(
    c: sa.Connection,
    session_id: str,
    task_ids: list[str],
    after: int,
    limit: int,
    max_bytes: int | None = None,
    before: int | None = None,
) -> list[Event]:
    """These tasks' events and their sub-agents' (whose ids are `<task>.<k>`), in seq order
    after `after` (and below `before`): the ranges of their keys (`<task>:…`, `<task>.…`) on
    the (session, key) index."""
    ranges = [
        sa.and_(events.c.key >= task_id + sep, events.c.key < task_id + sep + "\U0010ffff")
        for task_id in dict.fromkeys(task_ids)
        for sep in (":", ".")
    ]
    # `seq + 0`: not the (session, seq) primary key, which SQLite would otherwise walk for
    # the order, filtering the whole session's events (5 ms a turn at 10,000 events; the
    # key ranges and a sort of what they hold: 0.04 ms).
    seq = events.c.seq + 0
    q = (
        sa.select(*_EVENT_COLUMNS)
        .where(
            events.c.session_id == session_id,
            sa.or_(*ranges),
            seq > after,
            seq > _low_seq(session_id),
            seq < (before if before is not None else 2**62),
        )
        .order_by(seq)
        .limit(limit)
    )
    return _collect(c.execute(q), session_id, max_bytes)


def _collect(rows: Any, session_id: str, max_bytes: int | None) -> list[Event]:
    out: list[Event] = []
    size = 0
    for r in rows:
        out.append(Event(r[0], session_id, r[1], r[2], r[3], r[4], r[5]))
        if max_bytes is not None:
            size += len(r[4]) + EVENT_OVERHEAD
            if size >= max_bytes:
                break
    return out


def _low_seq(session_id: str) -> Any:
    return sa.select(sessions.c.low_seq).where(sessions.c.id == session_id).scalar_subquery()


def page_is_full(events: list[Event], limit: int, max_bytes: int | None = None) -> bool:
    """Whether read_after stopped at its limits (more may follow) rather than at the head."""
    if len(events) >= limit:
        return True
    return max_bytes is not None and events_size(events) >= max_bytes
