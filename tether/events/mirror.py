"""An in-memory mirror of the sessions streams read: a stream that opens (or reconnects)
near the head of its session is served from memory, with no database read.

For each session a stream opened lately, the mirror holds what a stream's start reads:
the session's head and low seq and task count, its task summaries (`db.tasks.SUMMARY`'s
columns) when it has at most MIRROR_TASKS tasks, its newest events as frames, and its
oldest ones (the first page of a replay from the start: a client that replays the whole
log, from another device or from a script, sees its first event without a read; the rest
of its backlog is read as the stream sends it, as before). It is
made from one read of the database and then kept by the log's writer: each commit hands it
the events and the task-row changes the transaction wrote (`Plan`), after the commit and
before any stream hears of it, so the mirror never holds what is not durable, and a
stream that subscribes and then reads it misses nothing.

Only where this process is the only writer (the embedded SQLite file): on a shared
database other processes commit too, and their task-row changes never pass through here.
What the mirror cannot answer exactly (an unknown session, a cursor older than its ring, a
snapshot that would be cut to fewer tasks than the session has) is read from the database,
as before. A commit that does not follow what an entry holds drops the entry, to be read
again. `check` (tests) compares every answer with a read of the database.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tether.db.tasks import SUMMARY, Summary, read_all_summaries
from tether.events.frames import Frames, read_frame_list
from tether.events.plan import Plan
from tether.events.stream import FIRST_PAGE, FIRST_PAGE_BYTES
from tether.model import EVENT_OVERHEAD, Event, Session

log = logging.getLogger(__name__)

MIRROR_TASKS = 50  # a session with more keeps no summaries here: its snapshot is read
RING = 256  # the newest events kept per session
RING_BYTES = 256 << 10  # ... and about this much of their data at most
TOTAL_BYTES = 32 << 20  # all sessions' rings; the least recently opened go first
MAX_SESSIONS = 5_000

_COLUMNS = tuple(c.name for c in SUMMARY)
_INDEX = {name: i for i, name in enumerate(_COLUMNS)}


@dataclass(slots=True)
class _Entry:
    session: Session
    # id -> a summary row's values (a list, changed in place); None: too many tasks to keep
    tasks: dict[str, list[Any]] | None
    # (seq, frame or the Event to make it from, size), consecutive, ending at the head: an
    # event's frame is made when a stream first needs it (a commit of thousands would
    # otherwise pay for frames that the next commit pushes out)
    ring: deque[tuple[int, str | Event, int]] = field(default_factory=deque)
    ring_bytes: int = 0
    # The first page after `start_low` (the session's low seq) as read_frames reads it: its
    # events while the commits fill it, then, whole (FIRST_PAGE events, or FIRST_PAGE_BYTES
    # of data), its frames, made once. None where it is not known: retention moved the low
    # seq on (until a read of the database hands the new one over), or it would be large.
    start: list[tuple[int, str | Event, int]] | Frames | None = None
    start_bytes: int = 0
    start_low: int = 0

    @property
    def bytes(self) -> int:
        return self.ring_bytes + self.start_bytes


@dataclass(slots=True)
class Opened:
    """What a stream's start sends, from memory: the session, its summaries (at most
    `limit`, in creation order) and task count, and every event after the cursor up to the
    head as frames."""

    session: Session
    tasks: list[Any]
    task_count: int
    first: Frames
    more: bool = False  # `first` is the first page of a longer backlog


class Mirror:
    def __init__(self, *, check: bool = False) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._held: dict[str, int] = {}  # sessions being deleted: not mirrored meanwhile
        self.check = check
        self.hits = 0
        self.misses = 0
        self.mismatches = 0
        self.raced = 0  # checks that found a newer commit in the database

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._entries

    # -- answering -------------------------------------------------------------------------

    def open(self, session_id: str, owner: str, cursor: int, limit: int) -> Opened | None:
        """A stream's start from memory, or None where only the database can answer it."""
        e = self._entries.get(session_id)
        if (
            e is None
            or e.session.owner != owner
            or not e.session.low_seq <= cursor <= e.session.head_seq
            or (limit and (e.tasks is None or e.session.task_count > limit))
        ):
            self.misses += 1
            return None
        s, ring = e.session, e.ring
        start = s.head_seq - len(ring) + 1  # the ring's first seq
        more = False
        if cursor + 1 >= start:
            parts: list[str] = []
            size = 0
            for _, item, n in itertools.islice(ring, cursor + 1 - start, None):
                parts.append(frame(item))
                size += n
            first = (
                Frames("".join(parts), cursor + 1, s.head_seq, len(parts), size)
                if parts
                else Frames()
            )
        elif isinstance(e.start, Frames) and cursor == e.start_low:
            first = e.start
            more = first.last < s.head_seq
        else:
            self.misses += 1
            return None
        self._entries.move_to_end(session_id)
        rows: list[Any] = []
        if limit and e.tasks:
            rows = sorted((Summary._make(v) for v in e.tasks.values()), key=_creation)
        self.hits += 1
        snapshot = Session(*_fields(s))  # a copy: the entry's own changes with each commit
        return Opened(snapshot, rows, s.task_count, first, more)

    # -- keeping -------------------------------------------------------------------------

    def load(self, c: sa.Connection, s: Session) -> None:
        """Mirror session `s`, as read on `c` (in the read's transaction: everything read
        is of one commit)."""
        if s.id in self._entries or s.id in self._held:
            return
        tasks: dict[str, list[Any]] | None = None
        if s.task_count <= MIRROR_TASKS:
            rows = read_all_summaries(c, s.id, MIRROR_TASKS + 1)
            if len(rows) <= MIRROR_TASKS:
                tasks = {r[0]: list(r) for r in rows}
        e = _Entry(Session(*_fields(s)), tasks)
        after = max(s.low_seq, s.head_seq - RING)
        got = read_frame_list(c, s.id, after, RING, RING_BYTES) if s.head_seq > after else []
        # The newest events, if they fit (else none: the ring fills from the commits).
        if got and got[0][0] == after + 1 and got[-1][0] == s.head_seq:
            e.ring.extend(got)
            e.ring_bytes = sum(n for _, _, n in got)
        self._trim(e)
        e.start_low = s.low_seq
        page: list[tuple[int, str | Event, int]] = []
        if e.ring and e.ring[0][0] == s.low_seq + 1:
            # The ring holds the whole log: its first page is the start (no second read).
            taken = 0
            for item in itertools.islice(e.ring, FIRST_PAGE):
                page.append(item)
                taken += item[2]
                if taken >= FIRST_PAGE_BYTES:
                    break
        elif s.head_seq > s.low_seq:
            page.extend(read_frame_list(c, s.id, s.low_seq, FIRST_PAGE, FIRST_PAGE_BYTES))
        size = sum(n for _, _, n in page)
        # Whole, or all there is up to the head (which the commits go on filling).
        last = page[-1][0] if page else s.low_seq
        if last - s.low_seq == len(page) and (last == s.head_seq or _whole(len(page), size)):
            e.start, e.start_bytes = page, size
            _settle_start(e)
        self._entries[s.id] = e
        self._bytes += e.bytes
        self._evict()

    def commit(self, plan: Plan, committed: dict[str, list[Event]]) -> None:
        """A transaction committed `plan`: apply it to the sessions mirrored."""
        if not self._entries:
            return
        lows = {x["_id"]: x["_low"] for x in plan.sessions}
        new_tasks: dict[str, list[dict[str, Any]]] = {}
        for row in plan.new_tasks:
            new_tasks.setdefault(row["session_id"], []).append(row)
        for session_id, evs in committed.items():
            e = self._entries.get(session_id)
            if e is None or not evs:
                continue
            s = e.session
            if evs[-1].seq <= s.head_seq:
                continue  # read with the entry already
            if evs[0].seq != s.head_seq + 1:
                log.warning(
                    "mirror: session %s skipped from %d to %d", session_id, s.head_seq, evs[0].seq
                )
                self.forget(session_id)
                continue
            added = new_tasks.get(session_id, ())
            before = e.bytes
            self._extend_start(e, evs, lows.get(session_id, s.low_seq))
            s.head_seq = evs[-1].seq
            s.low_seq = lows.get(session_id, s.low_seq)
            s.task_count += len(added)
            if e.tasks is not None:
                if len(e.tasks) + len(added) > MIRROR_TASKS:
                    e.tasks = None
                else:
                    for row in added:
                        e.tasks[row["id"]] = [row.get(name) for name in _COLUMNS]
            if e.tasks is not None:
                # Each task's changes in this commit, once (not once per event).
                for task_id, values in plan.task_values.items():
                    summary = e.tasks.get(task_id)
                    if summary is not None:
                        for name, value in values.items():
                            i = _INDEX.get(name)
                            if i is not None:
                                summary[i] = value
            # Only the newest events can stay: of a commit of thousands, the last RING.
            tail = evs[-RING:]
            if len(tail) == RING:
                e.ring.clear()
                e.ring_bytes = 0
            for ev in tail:
                size = len(ev.data) + EVENT_OVERHEAD
                e.ring.append((ev.seq, ev, size))
                e.ring_bytes += size
            self._trim(e)
            self._bytes += e.bytes - before
        self._evict()

    @contextmanager
    def held(self, session_id: str) -> Iterator[None]:
        """Not mirrored while this runs (a delete), nor answered from an entry made before."""
        self.forget(session_id)
        self._held[session_id] = self._held.get(session_id, 0) + 1
        try:
            yield
        finally:
            n = self._held.pop(session_id) - 1
            if n:
                self._held[session_id] = n
            self.forget(session_id)

    def forget(self, session_id: str) -> None:
        e = self._entries.pop(session_id, None)
        if e is not None:
            self._bytes -= e.bytes

    def _trim(self, e: _Entry) -> None:
        ring, low = e.ring, e.session.low_seq
        while ring and (len(ring) > RING or e.ring_bytes > RING_BYTES or ring[0][0] <= low):
            e.ring_bytes -= ring.popleft()[2]

    def keep_start(self, session_id: str, low: int, first: Frames) -> None:
        """A read of the database found `first`, the whole first page after `low`: the
        start page of a mirrored session that lost its own to retention."""
        e = self._entries.get(session_id)
        if (
            e is None
            or e.start is not None
            or e.session.low_seq != low
            or first.first != low + 1
            or not _whole(first.count, first.size)
        ):
            return
        e.start, e.start_low, e.start_bytes = first, low, first.size
        _settle_start(e)
        self._bytes += e.start_bytes
        self._evict()

    @staticmethod
    def _extend_start(e: _Entry, evs: list[Event], low: int) -> None:
        """Commit `evs` (following the entry's head) to its start page while it fills;
        `low`: the session's low seq after the commit."""
        page = e.start
        if page is None:
            return
        if low != e.start_low:
            e.start, e.start_bytes = None, 0  # retention moved the start on
            return
        if isinstance(page, Frames):
            return
        if (page[-1][0] if page else e.start_low) != e.session.head_seq:
            e.start, e.start_bytes = None, 0  # not consecutive up to the head: not known
            return
        for ev in evs:
            if _whole(len(page), e.start_bytes):
                break
            size = len(ev.data) + EVENT_OVERHEAD
            page.append((ev.seq, ev, size))
            e.start_bytes += size
        _settle_start(e)

    def _evict(self) -> None:
        while self._entries and (self._bytes > TOTAL_BYTES or len(self._entries) > MAX_SESSIONS):
            _, e = self._entries.popitem(last=False)
            self._bytes -= e.bytes


def _fields(s: Session) -> tuple[Any, ...]:
    return (s.id, s.owner, s.title, s.created_at, s.head_seq, s.low_seq, s.task_count)


def _settle_start(e: _Entry) -> None:
    """A start page that is whole becomes its frames; one of large events is not kept."""
    page = e.start
    if e.start_bytes > RING_BYTES:
        e.start, e.start_bytes = None, 0
    elif isinstance(page, list) and _whole(len(page), e.start_bytes):
        text = "".join([frame(item) for _, item, _ in page])
        e.start = Frames(text, page[0][0], page[-1][0], len(page), e.start_bytes)


def _whole(count: int, size: int) -> bool:
    """Whether a start page holds what read_frames reads as a first page."""
    return count >= FIRST_PAGE or size >= FIRST_PAGE_BYTES


def frame(item: str | Event) -> str:
    return item if isinstance(item, str) else item.frame()


def _creation(row: Any) -> tuple[float, str]:
    return (row.created_at, row.id)
