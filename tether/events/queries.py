"""The log's queries, run on a connection: pages after or before a seq, a task's events,
keyed events. What a reader is served from them (scoped, without gaps, `Gone`) is reader.py's.

Rows below a session's low_seq are retention's (kept only for their keys) and never served.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tether.db.schema import events, sessions
from tether.model import EVENT_OVERHEAD, Event, events_size

# An Event's columns, in the order Event takes them after its session id.
_EVENT_COLUMNS = (
    events.c.seq,
    events.c.task_id,
    events.c.parent_task_id,
    events.c.type,
    events.c.data,
    events.c.ts,
)


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


def read_keyed(c: sa.Connection, session_id: str, prefix: str) -> list[tuple[str, Event]]:
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
    return [(r[0], Event(r[1], session_id, r[2], r[3], r[4], r[5], r[6])) for r in c.execute(q)]
