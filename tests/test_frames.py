"""A stream's backlog read straight into frames is the text `Event.frame` makes for the same
events, byte for byte, within the same bounds, on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import MakeLog
from tests.test_log import task_row
from tether.db.store import Store
from tether.events.frames import Frames, read_frames
from tether.events.log import Append, page_is_full, read_after
from tether.events.stream import event_frames
from tether.model import Event, dumps


async def test_frames_are_the_events_frames_within_the_same_bounds(make_log: MakeLog) -> None:
    log = await make_log(retention=30)
    store = Store(log.db)
    sid = (await store.create_session("u", "")).id
    other = (await store.create_session("u", "")).id  # its events never show
    await log.append(
        Append(sid, "t1", None, "task.created", "{}", new_task=task_row(sid, "t1")),
        Append(sid, "t1.1", "t1", "task.created", "{}", new_task=task_row(sid, "t1.1", "t1")),
    )
    values = ["plain", "é ✓ 😀", "line\u2028breaker\u0085\u2029", {"n": 1.5, "x": None}, "x" * 3000]
    owners = [(None, None), ("t1", None), ("t1.1", "t1")]
    await log.append(
        *(
            Append(sid, *owners[i % 3], "tick" if i % 2 else "ünïcode type", dumps(values[i % 5]))
            for i in range(60)
        )
    )
    await log.append(Append(other, None, None, "tick", dumps(1)))

    async def both(after: int, limit: int, max_bytes: int) -> tuple[Frames, list[Event]]:
        def read(c: sa.Connection) -> tuple[Frames, list[Event]]:
            events = read_after(c, sid, after, limit, max_bytes)
            return read_frames(c, sid, after, limit, max_bytes), events

        return await log.db.read(read)

    bounds = [(0, 1000, 1 << 20), (30, 7, 1 << 20), (45, 100, 5000), (59, 10, 1), (62, 10, 100)]
    for after, limit, max_bytes in bounds:
        frames, events = await both(after, limit, max_bytes)
        assert frames.text == event_frames(events), (after, limit, max_bytes)
        assert frames.count == len(events)
        assert (frames.first, frames.last) == (
            (events[0].seq, events[-1].seq) if events else (0, 0)
        )
        assert frames.full(limit, max_bytes) == page_is_full(events, limit, max_bytes)
    frames, events = await both(0, 1000, 1 << 20)
    assert {e.task_id for e in events} == {None, "t1", "t1.1"} and len(events) == 62
    # Retention keeps 30 (pruning once 100 more are over): what it pruned is not served.
    await log.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(200)))
    frames, events = await both(0, 1000, 1 << 20)
    assert frames.text == event_frames(events) and frames.first == 233 and frames.last == 262
