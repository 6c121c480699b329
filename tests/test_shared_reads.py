"""Streams of a session that catch up together share one read of the log, and each still
gets every event once, in seq order; a read that began before a stream's subscription is
never shared with it (it may lack what was committed in between)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from tests.conftest import MakeLog
from tether.db.store import Store
from tether.events import hub as hub_module
from tether.events.frames import Frames, SharedReads, read_frames
from tether.events.hub import MemoryHub
from tether.events.log import Append, EventLog
from tether.events.stream import FIRST_PAGE, FIRST_PAGE_BYTES, session_stream
from tether.model import dumps


def seqs(chunk: str) -> list[int]:
    return [
        json.loads(line[6:])["seq"] for line in chunk.split("\n") if line.startswith('data: {"seq"')
    ]


async def no_auth_end() -> None:
    return None


async def ticks(log: EventLog, sid: str, n: int, size: int = 1) -> None:
    await log.append(*(Append(sid, None, None, "tick", dumps("x" * size)) for _ in range(n)))


async def open_streams(
    log: EventLog, hub: MemoryHub, reads: SharedReads, sid: str, n: int
) -> list[tuple[AsyncIterator[str], list[int]]]:
    """n streams from seq 0, as the route opens them: subscribe, then read the first page."""
    out = []
    for _ in range(n):
        sub = hub.subscribe(sid)
        first: Frames = await log.db.read(
            partial(
                read_frames, session_id=sid, after=0, limit=FIRST_PAGE, max_bytes=FIRST_PAGE_BYTES
            )
        )
        more = first.full(FIRST_PAGE, FIRST_PAGE_BYTES)
        gen = session_stream(sub, reads, "{}", 0, 60, 1000, no_auth_end, first, more)  # type: ignore[arg-type]
        out.append((gen, seqs(await anext(gen))))
    return out


async def test_streams_catching_up_together_share_one_read_and_miss_nothing(
    make_log: MakeLog,
) -> None:
    log = await make_log()
    hub = MemoryHub()
    log.add_listener(hub.publish)
    reads = SharedReads(log.db)
    sid = (await Store(log.db).create_session("u", "")).id
    await ticks(log, sid, 300)
    streams = await open_streams(log, hub, reads, sid, 20)
    assert all(got == list(range(1, FIRST_PAGE + 1)) for _, got in streams)

    async def next_chunk(gen: AsyncIterator[str], got: list[int]) -> None:
        got.extend(seqs(await anext(gen)))

    # The backlog after the first page: one read for the twenty.
    await asyncio.gather(*(next_chunk(g, got) for g, got in streams))
    assert reads.reads == 1
    assert all(got == list(range(1, 301)) for _, got in streams)
    # Every one of them is told of more than it may hold: they read the log, once.
    await ticks(log, sid, 3, size=hub_module.MAX_PENDING_BYTES // 2)
    await asyncio.gather(*(next_chunk(g, got) for g, got in streams))
    assert reads.reads == 2
    assert all(got == list(range(1, 304)) for _, got in streams)
    for gen, _ in streams:
        await gen.aclose()  # type: ignore[attr-defined]


async def test_a_read_begun_before_a_subscription_is_not_shared_with_it(make_log: MakeLog) -> None:
    log = await make_log()
    sid = (await Store(log.db).create_session("u", "")).id
    await ticks(log, sid, 10)
    reads = SharedReads(log.db)
    gate = asyncio.Event()
    real = log.db.read

    async def held(fn: Any, **kw: Any) -> Any:
        out = await real(fn, **kw)  # read now, answer when the gate opens
        await gate.wait()
        return out

    log.db.read = held  # type: ignore[method-assign]
    hub = MemoryHub()
    a = hub.subscribe(sid)
    first = asyncio.ensure_future(reads.after(sid, 0, 100, 1 << 20, a.since))
    await asyncio.sleep(0.05)  # its read has run: events 1..10
    await ticks(log, sid, 1)  # committed before b subscribed: b is never told of it
    b = hub.subscribe(sid)
    second = asyncio.ensure_future(reads.after(sid, 0, 100, 1 << 20, b.since))
    await asyncio.sleep(0.05)
    gate.set()
    assert (await first).last == 10
    assert (await second).last == 11 and reads.reads == 2
