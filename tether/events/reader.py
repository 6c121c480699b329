"""What a reader of a session's log is served: the snapshot, the pages of events, and
"gone" when the log no longer holds what a cursor asks for.

Every read here is scoped to the session's owner (NotFound for another's) and is one
consistent read of the database. Pages never have a gap: a cursor outside what the log
holds, or events pruned while the read ran, raise `Gone`, which carries the snapshot a
client rebuilds from. Rendering them as JSON is the web layer's (`tether.web.render`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.sessions import read_session
from tether.db.tasks import count_in_session, read_summaries
from tether.errors import NotFound
from tether.events.frames import Frames, read_frames
from tether.events.log import page_is_full, read_after, read_before, read_task_events
from tether.events.mirror import Mirror
from tether.events.stream import FIRST_PAGE, FIRST_PAGE_BYTES
from tether.model import Event, Session

log = logging.getLogger(__name__)

INLINE_TASKS = 50  # a stream on a session with more tasks reads its snapshot on a thread


@dataclass(slots=True)
class Snapshot:
    """A session as a stream starts from it (or a 410 rebuilds from): its head and first
    seq, and at most a bounded number of task summaries (rows of `db.tasks.SUMMARY`'s
    columns), unfinished ones first, in creation order."""

    session: Session
    tasks: list[Any]
    task_count: int
    server_time: float
    heartbeat_s: float | None = None


class Gone(Exception):
    """The events after the cursor cannot be served: `detail` says why, `snapshot` is what
    to rebuild from (then resume from its head seq)."""

    def __init__(self, detail: str, snapshot: Snapshot) -> None:
        super().__init__(detail)
        self.detail = detail
        self.snapshot = snapshot


@dataclass(slots=True)
class Page:
    """Events of a session's log, in seq order, the session's head as read with them, and
    where the next page starts: after `next_after` (and, reading backwards, below
    `next_before`); `more` says whether there is one."""

    session_id: str
    head_seq: int
    first_seq: int
    events: list[Event]
    next_after: int
    more: bool
    next_before: int | None = None


def read_snapshot(
    c: sa.Connection, s: Session, limit: int, heartbeat_s: float | None = None
) -> Snapshot:
    tasks, total = read_summaries(c, s, limit)
    return Snapshot(s, tasks, total, time.time(), heartbeat_s)


def gone_reason(cursor: int, s: Session, first_seq: int) -> str | None:
    """Why events after `cursor` cannot be served from this read, or None if they can. The
    cursor must lie within what the log holds (low_seq <= cursor <= head_seq), and the first
    event read (`first_seq`, 0 if none) must be cursor + 1: retention may prune between the
    session read and the event read (on Postgres they are separate snapshots). A gap is
    never served."""
    if cursor < s.low_seq:
        return f"events after seq {cursor} are no longer retained (first kept: {s.low_seq + 1})"
    if cursor > s.head_seq:
        return f"seq {cursor} is beyond the head of this session's log ({s.head_seq})"
    if first_seq and first_seq != cursor + 1:
        return f"events after seq {cursor} were pruned while this request ran"
    return None


def _check(c: sa.Connection, cursor: int, s: Session, first_seq: int, tasks: int) -> None:
    reason = gone_reason(cursor, s, first_seq)
    if reason is not None:
        raise Gone(
            reason + "; rebuild from the snapshot and resume from its head_seq",
            read_snapshot(c, s, tasks),
        )


def page_after(
    c: sa.Connection,
    session_id: str,
    owner: str,
    cursor: int,
    limit: int,
    max_bytes: int,
    snapshot_tasks: int,
) -> Page:
    """The events after `cursor` (`limit` at most, about `max_bytes` of data at most);
    Gone, with a snapshot of `snapshot_tasks` tasks at most, if the log cannot serve them."""
    s = read_session(c, session_id, owner)
    events = read_after(c, session_id, cursor, limit, max_bytes)
    _check(c, cursor, s, events[0].seq if events else 0, snapshot_tasks)
    next_after = events[-1].seq if events else cursor
    more = page_is_full(events, limit, max_bytes)
    # An event committed after the session was read is served: the head is never behind it.
    return Page(session_id, max(s.head_seq, next_after), s.low_seq + 1, events, next_after, more)


def page_before(
    c: sa.Connection,
    session_id: str,
    owner: str,
    before: int,
    limit: int,
    max_bytes: int,
    after: int = 0,
) -> Page:
    """The events just below seq `before` (and above `after`): the tail of the log, or the
    page above what a reader has. Never Gone: it serves what is still kept, and `more`
    says whether older events are kept."""
    s = read_session(c, session_id, owner)
    events = read_before(c, session_id, before, limit, max_bytes, after)
    older = bool(events) and events[0].seq > max(s.low_seq, after) + 1
    return Page(
        session_id,
        s.head_seq,
        s.low_seq + 1,
        events,
        next_after=events[-1].seq if events else min(before - 1, s.head_seq),
        more=older,
        next_before=events[0].seq if events else before,
    )


def page_of_tasks(
    c: sa.Connection,
    session_id: str,
    owner: str,
    task_ids: list[str],
    after: int,
    limit: int,
    max_bytes: int,
    before: int | None = None,
) -> Page:
    """These tasks' events and their sub-agents', after `after` (and below `before`);
    NotFound if any of them is not a task of this session."""
    s = read_session(c, session_id, owner)
    if count_in_session(c, session_id, set(task_ids)) != len(set(task_ids)):
        raise NotFound("a task asked for is not in this session")
    events = read_task_events(c, session_id, task_ids, after, limit, max_bytes, before)
    next_after = events[-1].seq if events else after
    more = page_is_full(events, limit, max_bytes)
    return Page(session_id, s.head_seq, s.low_seq + 1, events, next_after, more)


@dataclass(slots=True)
class StreamStart:
    """What a stream sends first: its snapshot (rendered), then `first`, the first page of
    the backlog after its cursor, as frames; `more`: whether the backlog goes on after it."""

    session: Session
    snapshot: str
    first: Frames
    more: bool
    from_memory: bool = False


async def stream_start(
    db: Database,
    mirror: Mirror | None,
    session_id: str,
    owner: str,
    cursor: int,
    limit: int,
    snapshot_tasks: int,
    heartbeat_s: float,
    render: Callable[[Snapshot], str],
) -> StreamStart:
    """The snapshot (`limit` task summaries at most) and the first page of the backlog
    (FIRST_PAGE events at most), in one read, or from the mirror when it can answer; Gone
    (with a snapshot of `snapshot_tasks` tasks, which a rebuild needs) if the log cannot
    serve the cursor. `render` makes the snapshot's text, on the thread that read it."""
    if mirror is not None:
        opened = mirror.open(session_id, owner, cursor, limit)
        if opened is not None:
            snap = Snapshot(
                opened.session, opened.tasks, opened.task_count, time.time(), heartbeat_s
            )
            served = StreamStart(opened.session, render(snap), opened.first, opened.more, True)
            if mirror.check:
                await _check_mirror(db, mirror, served, snap, cursor, limit, render)
            return served

    def read(c: sa.Connection, whole: bool) -> StreamStart | None:
        # A session of a few tasks is read right here on the loop (a hand-off to a thread
        # costs more than the read); a large one (`whole`) on a reader thread, so that ten
        # thousand tasks do not stall every other stream; its snapshot's text is made there.
        s = read_session(c, session_id, owner)
        if not whole and limit and s.task_count > INLINE_TASKS:
            return None
        first = read_frames(c, session_id, cursor, FIRST_PAGE, FIRST_PAGE_BYTES)
        _check(c, cursor, s, first.first, snapshot_tasks)
        snapshot = render(read_snapshot(c, s, limit, heartbeat_s))
        if mirror is not None and not whole:
            mirror.load(c, s)  # on the loop: no commit is told to the mirror meanwhile
            if cursor == s.low_seq:
                mirror.keep_start(s.id, s.low_seq, first)  # its own was lost to retention
        return StreamStart(s, snapshot, first, first.full(FIRST_PAGE, FIRST_PAGE_BYTES))

    start = await db.read(lambda c: read(c, False), inline=True)
    if start is None:
        start = await db.read(lambda c: read(c, True))
    assert start is not None
    return start


async def _check_mirror(
    db: Database,
    mirror: Mirror,
    start: StreamStart,
    snap: Snapshot,
    cursor: int,
    limit: int,
    render: Callable[[Snapshot], str],
) -> None:
    """Tests: what the mirror answered must be what the database holds (read inline, so
    no commit lands in between). A difference is counted, logged and raised: the stream
    fails to open, and so does the test."""
    s = snap.session

    def read(c: sa.Connection) -> tuple[int, str, str]:
        db_s = read_session(c, s.id, s.owner)
        # What the mirror answered: the first page of a longer backlog, or all of it.
        bounds = (FIRST_PAGE, FIRST_PAGE_BYTES) if start.more else (1 << 30, 1 << 62)
        first = read_frames(c, s.id, cursor, *bounds)
        db_snap = read_snapshot(c, db_s, limit, snap.heartbeat_s)
        db_snap.server_time = snap.server_time
        # SQLite reads without BEGIN each see the newest commit: a commit between them
        # makes the read's parts disagree, and it is not compared.
        again = read_session(c, s.id, s.owner).head_seq
        return max(db_s.head_seq, again, first.last), render(db_snap), first.text

    head, *want = await db.read(read, inline=True)
    if head > s.head_seq:
        # A commit the writer has made but not yet told the mirror (nor this stream's
        # subscription, which it is pushed to next): nothing to compare.
        mirror.raced += 1
        return
    if want != [start.snapshot, start.first.text]:
        mirror.mismatches += 1
        log.error(
            "mirror differs from the database for session %s (cursor %d):\n mirror %s %r"
            "\n     db %s %r",
            s.id,
            cursor,
            start.snapshot,
            start.first.text[:500],
            want[0],
            want[1][:500],
        )
        mirror.forget(s.id)
        raise RuntimeError(f"the session mirror differs from the database for {s.id}")
