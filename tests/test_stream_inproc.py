"""The stream generator against a real log, in process: gaps, memory bounds, the heartbeat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import MakeLog
from tether.db.store import Store
from tether.events import hub as hub_module
from tether.events.frames import NO_FRAMES, SharedReads
from tether.events.hub import MemoryHub
from tether.events.log import Append, EventLog, read_after
from tether.events.stream import session_stream
from tether.model import Event, dumps


@pytest.fixture
async def parts(make_log: MakeLog) -> tuple[EventLog, MemoryHub, str]:
    log = await make_log(retention=100)
    hub = MemoryHub()
    log.add_listener(hub.publish)
    sid = (await Store(log.db).create_session("u", "")).id
    return log, hub, sid


def frames(chunk: str) -> list[tuple[str, Any]]:
    out = []
    for block in chunk.split("\n\n"):
        name, data, ident = "message", None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                ident = int(line[4:])
        if data is not None:
            out.append((name, data if ident is None else data["seq"]))
    return out


async def no_auth_end() -> None:
    return None


def stream(log: EventLog, hub: MemoryHub, sid: str, cursor: int, heartbeat_s: float = 60) -> Any:
    return session_stream(
        hub.subscribe(sid),
        SharedReads(log.db),
        "{}",
        cursor,
        heartbeat_s,
        1000,
        no_auth_end,
        NO_FRAMES,
        False,
    )


async def test_a_stream_behind_pruned_events_is_sent_to_rebuild_not_across_a_gap(
    parts: tuple[EventLog, MemoryHub, str],
) -> None:
    log, hub, sid = parts
    await log.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(2)))
    gen = stream(log, hub, sid, 2)
    assert frames(await anext(gen)) == [("snapshot", {})]
    # While the client is not reading, far more is committed than the hub keeps for it, and
    # retention (100) prunes past the stream's position.
    for _ in range(60):
        await log.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(100)))
    got = frames(await anext(gen))
    assert got[0][0] == "gone", got[:3]
    with pytest.raises(StopAsyncIteration):
        await anext(gen)


async def test_a_stuck_subscriber_holds_a_bounded_number_of_bytes(
    parts: tuple[EventLog, MemoryHub, str],
) -> None:
    log, hub, sid = parts
    sub = hub.subscribe(sid)
    big = dumps("x" * 200_000)
    for _ in range(20):  # 4 MB committed while nobody takes
        await log.append(Append(sid, None, None, "big", big))
        assert sub.pending_bytes <= hub_module.MAX_PENDING_BYTES
    events, overflow = sub.take()
    assert overflow and events == []  # the stream reads the log instead
    sub.close()


async def test_pages_of_large_events_stop_at_the_byte_budget(
    parts: tuple[EventLog, MemoryHub, str],
) -> None:
    log, _, sid = parts
    big = dumps("x" * 100_000)
    await log.append(*(Append(sid, None, None, "big", big) for _ in range(30)))
    page = await log.db.read(lambda c: read_after(c, sid, 0, 2000, 1 << 20))
    assert 5 <= len(page) <= 11 and [e.seq for e in page] == list(range(1, len(page) + 1))


async def test_the_heartbeat_carries_the_log_head_not_the_stream_position(
    parts: tuple[EventLog, MemoryHub, str],
) -> None:
    log, hub, sid = parts
    gen = stream(log, hub, sid, 0, heartbeat_s=0)  # a heartbeat after every wake-up
    await anext(gen)  # snapshot
    await log.append(Append(sid, None, None, "tick", "1"))
    assert [seq for _, seq in frames(await anext(gen))] == [1]
    # The client is slow: while the stream waits to hand over seq 1, two more commit.
    await log.append(Append(sid, None, None, "tick", "2"), Append(sid, None, None, "tick", "3"))
    beat = next(d for name, d in frames(await anext(gen)) if name == "heartbeat")
    assert beat["head_seq"] == 3
    await gen.aclose()


def test_frames_never_hold_raw_line_breakers() -> None:
    from tether.events.stream import event_frames

    # Data stored before values were escaped at append still goes out escaped.
    text = event_frames([Event(1, "s", None, None, "t", '"a\u2028b\u0085c\u2029"', 0.0)])
    assert text.isascii() and text.splitlines() == text.split("\n")[:3]
    assert json.loads(text.splitlines()[1][6:])["data"] == "a\u2028b\u0085c\u2029"
