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

from dataclasses import dataclass

import sqlalchemy as sa

from tether.db.engine import driver_rows
from tether.db.schema import events, sessions
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
    sid = dumps(session_id)
    names: dict[str | None, str] = {None: "null"}
    parts: list[str] = []
    first = last = size = 0
    cursor = driver_rows(c, _AFTER, (session_id, after, session_id, limit))
    try:
        for seq, task_id, parent_id, type_, data, ts in cursor:
            task = names.get(task_id) or names.setdefault(task_id, dumps(task_id))
            parent = names.get(parent_id) or names.setdefault(parent_id, dumps(parent_id))
            kind = names.get(type_) or names.setdefault(type_, dumps(type_))
            parts.append(event_frame(seq, event_json(seq, sid, task, parent, kind, data, ts)))
            first = first or seq
            last = seq
            size += len(data) + EVENT_OVERHEAD
            if size >= max_bytes:
                break
    finally:
        cursor.close()
    return Frames("".join(parts), first, last, len(parts), size)
