"""A stream's backlog as SSE text, read from the DB-API cursor straight into frames.

A stream that replays events never needs them as objects: it sends their frames. Reading a
page through SQLAlchemy's result rows into `Event`s and encoding each one's strings again
cost most of a catch-up (a session id, a task id and a type through `dumps` per event);
here the session's id is encoded once per page and each distinct task id and type once, and
the frames are the text `Event.frame` makes, byte for byte (tests/test_frames.py).

The reads are read_after's (queries.py): the same rows, the same bounds (`limit`, and about
`max_bytes` of data, at least one event), rows below the session's low_seq never served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial

import sqlalchemy as sa

from tether.db.engine import Database, driver_rows
from tether.db.schema import events, sessions
from tether.events.hub import ticket
from tether.model import EVENT_OVERHEAD, dumps, event_frame, event_json

_E, _S = events.c, sessions.c
_AFTER = (
    f"SELECT {_E.seq.name}, {_E.task_id.name}, {_E.parent_task_id.name}, {_E.type.name},"
    f" {_E.data.name}, {_E.ts.name} FROM {events.name}"
    f" WHERE {_E.session_id.name} = ? AND {_E.seq.name} > ?"
    # Rows below low_seq are retention's: kept only for their keys, never served.
    f" AND {_E.seq.name} > (SELECT {_S.low_seq.name} FROM {sessions.name} WHERE {_S.id.name} = ?)"
    f" ORDER BY {_E.seq.name} LIMIT ?"
)


@dataclass(slots=True, frozen=True)
class Frames:
    """Consecutive events of a session's log as SSE frames: their text, the first and last
    seq (0 when there are none), how many, and about how many bytes of data
    (`model.events_size`'s measure)."""

    text: str = ""
    first: int = 0
    last: int = 0
    count: int = 0
    size: int = 0

    def full(self, limit: int, max_bytes: int) -> bool:
        """Whether the read stopped at its bounds (more may follow) rather than at the head."""
        return self.count >= limit or self.size >= max_bytes


NO_FRAMES = Frames()


def read_frames(
    c: sa.Connection, session_id: str, after: int, limit: int, max_bytes: int
) -> Frames:
    """Up to `limit` events after `after`, as frames, stopping once their data passes
    `max_bytes` (always at least one event)."""
    parts: list[str] = []
    first = last = size = 0
    frames = _frames(c, session_id, after, limit)
    try:
        for seq, frame, n in frames:
            parts.append(frame)
            first = first or seq
            last = seq
            size += n
            if size >= max_bytes:
                break
    finally:
        frames.close()  # the cursor, before the read's transaction ends
    return Frames("".join(parts), first, last, len(parts), size)


def read_frame_list(
    c: sa.Connection, session_id: str, after: int, limit: int, max_bytes: int
) -> list[tuple[int, str, int]]:
    """Up to `limit` events after `after`, each as (seq, frame, about how many bytes of
    data), stopping once their data passes `max_bytes` (always at least one event)."""
    out: list[tuple[int, str, int]] = []
    size = 0
    frames = _frames(c, session_id, after, limit)
    try:
        for item in frames:
            out.append(item)
            size += item[2]
            if size >= max_bytes:
                break
    finally:
        frames.close()  # the cursor, before the read's transaction ends
    return out


def _frames(
    c: sa.Connection, session_id: str, after: int, limit: int
) -> Generator[tuple[int, str, int]]:
    sid = dumps(session_id)
    names: dict[str | None, str] = {None: "null"}
    cursor = driver_rows(c, _AFTER, (session_id, after, session_id, limit))
    try:
        for seq, task_id, parent_id, type_, data, ts in cursor:
            task = names.get(task_id) or names.setdefault(task_id, dumps(task_id))
            parent = names.get(parent_id) or names.setdefault(parent_id, dumps(parent_id))
            kind = names.get(type_) or names.setdefault(type_, dumps(type_))
            frame = event_frame(seq, event_json(seq, sid, task, parent, kind, data, ts))
            yield seq, frame, len(data) + EVENT_OVERHEAD
    finally:
        cursor.close()


class SharedReads:
    """One read for the streams of a session that ask for the same page together (the
    clients of a session reconnecting at once from the same seq): they share its frames.

    A read in flight is joined only by a stream whose `since` ticket (hub.ticket: taken when
    it subscribed, or when it was last marked `overflow`) is older than the read: such a
    read began after every commit the stream was not told of, so it holds them. A stream
    that asks with a newer ticket starts a read of its own, which later ones join."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reads: dict[tuple[str, int, int, int], tuple[int, asyncio.Future[Frames]]] = {}
        self.reads = 0  # reads started (the others joined one)

    async def after(
        self, session_id: str, after: int, limit: int, max_bytes: int, since: int
    ) -> Frames:
        """The page after `after`, as read_frames reads it, by a read that began after the
        ticket `since`."""
        key = (session_id, after, limit, max_bytes)
        found = self._reads.get(key)
        if found is None or found[0] < since:
            started = ticket()
            read = asyncio.ensure_future(
                self._db.read(
                    partial(
                        read_frames,
                        session_id=session_id,
                        after=after,
                        limit=limit,
                        max_bytes=max_bytes,
                    )
                )
            )
            found = self._reads[key] = (started, read)
            self.reads += 1

            def done(_: object, key: tuple[str, int, int, int] = key, read: object = read) -> None:
                if self._reads.get(key, (0, None))[1] is read:
                    del self._reads[key]

            read.add_done_callback(done)
        # Shielded: a stream that goes away does not cancel the others' read.
        return await asyncio.shield(found[1])
