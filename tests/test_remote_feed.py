"""Commits from another process on one Postgres database reach this process's streams read
once and fanned out in memory, and interleaved with this process's own commits, exactly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import MakeLog
from tests.test_stream_inproc import frames, stream
from tether.db.store import Store
from tether.events.hub import MemoryHub
from tether.events.log import Append
from tether.events.pg_notify import PgListener, RemoteFeed, new_origin, notify_commits
from tether.model import Event, dumps


def ev(seq: int) -> Event:
    return Event(seq, "s", None, None, "tick", "0", 0.0)


def test_a_subscriber_gets_no_event_twice_and_reads_the_log_at_a_hole() -> None:
    hub = MemoryHub()
    sub = hub.subscribe("s")
    hub.publish("s", [ev(1), ev(2)])
    hub.publish("s", [ev(2), ev(3)])  # a read of the table overlapping a commit here
    events, overflow = sub.take()
    assert [e.seq for e in events] == [1, 2, 3] and not overflow
    hub.publish("s", [ev(5)])  # 4 was committed elsewhere and is not here yet
    events, overflow = sub.take()
    assert overflow  # the stream reads the log after its position instead
    hub.publish("s", [ev(4), ev(5)])  # what the read covers already
    hub.publish("s", [ev(6)])
    events, overflow = sub.take()
    assert [e.seq for e in events] == [6] and not overflow


@pytest.mark.parametrize("make_log", ["postgres"], indirect=True)
async def test_fifty_streams_follow_another_process_with_one_read_per_commit(
    make_log: MakeLog,
) -> None:
    here = await make_log()
    there = await make_log(same_db_as=here)  # another process's writer, on the same database
    origin = new_origin()
    here.add_commit_hook(notify_commits(origin))  # as Services wires it on a shared database
    there.add_commit_hook(notify_commits(new_origin()))
    hub = MemoryHub()
    feed = RemoteFeed(here, hub)
    here.add_listener(feed.on_commit)  # as Services wires it on a shared database
    listener = PgListener(here.db.url, origin, hub, feed)
    listener.start()
    reads = 0
    read_after = here.read_after

    async def counted(*args: Any) -> list[Event]:
        nonlocal reads
        reads += 1
        return await read_after(*args)

    here.read_after = counted  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        sid = (await Store(here.db).create_session("u", "")).id
        commits, per = 40, 25
        last = commits * per

        async def follow(slow: bool) -> list[int]:
            seqs: list[int] = []
            gen = stream(here, hub, sid, 0)
            while not seqs or seqs[-1] < last:
                seqs += [seq for name, seq in frames(await anext(gen)) if name == "message"]
                if slow:  # a client that reads slowly: commits pile up in its subscription
                    await asyncio.sleep(0.03)
            await gen.aclose()
            return seqs

        followers = [asyncio.create_task(follow(i % 2 == 1)) for i in range(50)]
        await asyncio.sleep(0.1)  # let every stream send its snapshot and wait

        def batch(i: int) -> list[Append]:
            return [Append(sid, None, None, "tick", dumps(i)) for _ in range(per)]

        for i in range(0, commits, 2):
            if i % 4 == 2:
                # Both at once: this process's commit is in its hub at once, the other's
                # arrives later through NOTIFY and a read, so one can overtake the other.
                await asyncio.gather(there.append(*batch(i)), here.append(*batch(i + 1)))
            else:
                await there.append(*batch(i))
                await there.append(*batch(i + 1))
        got = await asyncio.wait_for(asyncio.gather(*followers), 30)
    finally:
        await listener.stop()
    assert all(seqs == list(range(1, last + 1)) for seqs in got)  # each once, in order
    # Reading per stream would take 50 reads per commit (2,000). The other process's commits
    # take one read each at most (one read may cover several), and each stream reads once,
    # at its start: a commit here that overtakes one of the other's is read with it by the
    # feed, once, rather than leaving each of the 50 streams a hole to read at.
    assert feed.reads <= commits
    assert reads - feed.reads <= 50 + 5, (reads, feed.reads)


@pytest.mark.parametrize("make_log", ["postgres"], indirect=True)
async def test_a_commit_here_that_overtakes_an_unread_one_from_elsewhere_is_no_hole(
    make_log: MakeLog,
) -> None:
    # Another process commits seq 2; before its notification is read, this process commits
    # seq 3. Handed to the streams as it came, 3 would be a hole (each stream would read the
    # log); the feed reads 2 and 3 once and the streams get both, in order, in memory.
    here = await make_log()
    there = await make_log(same_db_as=here)
    hub = MemoryHub()
    feed = RemoteFeed(here, hub)
    here.add_listener(feed.on_commit)
    sid = (await Store(here.db).create_session("u", "")).id
    sub = hub.subscribe(sid)
    await there.append(Append(sid, None, None, "tick", dumps(1)))
    feed.on_head(sid, 1)  # the feed follows the session from here on
    assert sub.take() == ([], True)  # first news: the stream reads the log up to 1 itself
    await there.append(Append(sid, None, None, "tick", dumps(2)))  # its notification is late
    await here.append(Append(sid, None, None, "tick", dumps(3)))
    await asyncio.wait_for(asyncio.gather(*feed._busy.values()), 10)
    events, overflow = sub.take()
    assert [e.seq for e in events] == [2, 3] and not overflow
    assert feed.reads == 1
    feed.on_head(sid, 2)  # the late notification: read already, nothing to do
    assert feed.reads == 1 and sub.take() == ([], False)
    await here.append(Append(sid, None, None, "tick", dumps(4)))  # follows: handed on at once
    events, overflow = sub.take()
    assert [e.seq for e in events] == [4] and not overflow and feed.reads == 1
