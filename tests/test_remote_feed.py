"""Commits from another process on one Postgres database reach this process's streams from
their notifications (or, too large for one, read once) and fanned out in memory, interleaved
with this process's own commits, exactly, also across a lost listening connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import MakeLog
from tests.test_stream_inproc import frames, stream
from tether.db.store import Store
from tether.events.frames import read_frames
from tether.events.hub import MemoryHub
from tether.events.log import Append, EventLog
from tether.events.pg_notify import (
    PAYLOAD_MAX,
    PgListener,
    RemoteFeed,
    commit_payload,
    new_origin,
    notify_commits,
    parse_payload,
)
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
        got = await asyncio.wait_for(asyncio.gather(*followers), 5)
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


def test_a_commit_notification_carries_its_events_when_they_fit() -> None:
    evs = [
        Event(7, "s", "t1", None, "text", dumps({"t": 'héllo\u2028 "q"'}), 1.25),
        Event(8, "s", None, "p", "tick", dumps(-0.0), 1.5e9 + 1 / 3),
    ]
    payload = commit_payload("o", "s", evs)
    assert payload.isascii() and len(payload) <= PAYLOAD_MAX
    assert parse_payload(payload) == ("o", "s", 8, evs)
    # Byte for byte the frames the log's own read makes of them.
    assert [e.frame() for e in parse_payload(payload)[3] or []] == [e.frame() for e in evs]
    # Too large for a notification: the head alone, and a reader reads the log.
    big = [Event(9, "s", None, None, "blob", dumps("x" * PAYLOAD_MAX), 2.0)]
    assert commit_payload("o", "s", big) == "o s 9"
    assert parse_payload("o s 9") == ("o", "s", 9, None)
    # Events that do not end at the head, or do not follow one another, are not trusted.
    assert parse_payload(commit_payload("o", "s", evs).replace("o s 8", "o s 9"))[3] is None
    assert parse_payload("o s 8\n[[8,null") == ("o", "s", 8, None)


async def _follow(log: EventLog, hub: MemoryHub, sid: str, last: int, started: list[int]) -> str:
    """The text one stream sends after its snapshot (event frames), up to seq `last`."""
    gen = stream(log, hub, sid, 0)
    await anext(gen)  # the snapshot: subscribed, and waiting for what comes
    started.append(1)
    chunks: list[str] = []
    while not chunks or frames(chunks[-1])[-1][1] < last:
        chunks.append(await anext(gen))
    await gen.aclose()
    return "".join(chunks)


async def _feed(here: EventLog, there: EventLog) -> tuple[MemoryHub, RemoteFeed, PgListener]:
    """This process's hub, feed and listener, wired as Services wires them on a shared
    database, with another process (`there`) committing to the same one."""
    origin = new_origin()
    here.add_commit_hook(notify_commits(origin))
    there.add_commit_hook(notify_commits(new_origin()))
    hub = MemoryHub()
    feed = RemoteFeed(here, hub)
    here.add_listener(feed.on_commit)
    listener = PgListener(here.db.url, origin, hub, feed)
    listener.start()
    await asyncio.wait_for(listener.ready.wait(), 10)
    return hub, feed, listener


def _counting_reads(log: EventLog) -> list[int]:
    """Count every read of the log's database from here on (the streams' and the feed's)."""
    count = [0]
    read = log.db.read

    def counted(fn: Any) -> Any:
        count[0] += 1
        return read(fn)

    log.db.read = counted  # type: ignore[method-assign]
    return count


async def _until(check: Any, what: str) -> None:
    async with asyncio.timeout(20):
        while not check():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("make_log", ["postgres"], indirect=True)
async def test_streams_follow_another_process_from_its_notifications_without_a_read(
    make_log: MakeLog,
) -> None:
    # The other process's commits reach this one's streams in their notifications: not one
    # read of the database, however many streams, and each stream sends what a read of the
    # log would have sent, byte for byte.
    here = await make_log()
    there = await make_log(same_db_as=here)
    hub, feed, listener = await _feed(here, there)
    try:
        sid = (await Store(here.db).create_session("u", "")).id
        commits, per, n = 30, 5, 20
        started: list[int] = []
        followers = [
            asyncio.create_task(_follow(here, hub, sid, commits * per, started)) for _ in range(n)
        ]
        await _until(lambda: len(started) == n, "every stream to wait")
        reads = _counting_reads(here)
        for i in range(commits):
            await there.append(
                *(Append(sid, None, None, "text", dumps(f"é {i}")) for _ in range(per))
            )
        got = await asyncio.wait_for(asyncio.gather(*followers), 30)
    finally:
        await listener.stop()
    assert reads[0] == 0 and feed.reads == 0
    log_text = await here.db.read(lambda c: read_frames(c, sid, 0, 10_000, 1 << 30))
    assert all(text == log_text.text for text in got)


@pytest.mark.parametrize("make_log", ["postgres"], indirect=True)
async def test_commits_made_while_the_listening_connection_was_lost_still_reach_every_stream(
    make_log: MakeLog,
) -> None:
    # The database drops the listening connection, and another process commits before it is
    # made again: those notifications are gone. Listening again, the process wakes its
    # streams to read the log, and each sends every event once, in order, with nothing
    # committed after it to give the loss away.
    import psycopg

    here = await make_log()
    there = await make_log(same_db_as=here)
    hub, feed, listener = await _feed(here, there)
    relistened: list[int] = []
    listener.on_relisten.append(lambda: relistened.append(1))
    url = listener.url
    try:
        sid = (await Store(here.db).create_session("u", "")).id
        started: list[int] = []
        followers = [asyncio.create_task(_follow(here, hub, sid, 40, started)) for _ in range(10)]
        await _until(lambda: len(started) == 10, "every stream to wait")
        await there.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(20)))
        await _until(lambda: listener.received >= 1, "the first commit's notification")
        listener.url = url.replace("127.0.0.1", "127.0.0.1:1")  # no listening again, yet
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN tether%'"
            )
        await _until(lambda: not listener.ready.is_set(), "the listener to see the loss")
        await there.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(20)))
        listener.url = url
        await _until(listener.ready.is_set, "the listener to listen again")
        got = await asyncio.wait_for(asyncio.gather(*followers), 5)
    finally:
        await listener.stop()
    assert relistened == [1]
    assert all([seq for _, seq in frames(text)] == list(range(1, 41)) for text in got)


def test_a_commit_of_many_small_events_rides_in_its_notification_up_to_the_limit() -> None:
    def ticks(n: int) -> list[Event]:
        return [Event(i, "s", "task", None, "tick", "0", 1.0) for i in range(1, n + 1)]

    fits = max(n for n in range(1, 200) if "\n" in commit_payload("o", "s", ticks(n)))
    assert fits >= 50  # a model turn's commit of dozens of deltas needs no read
    assert parse_payload(commit_payload("o", "s", ticks(fits)))[3] == ticks(fits)
    assert commit_payload("o", "s", ticks(10_000)) == "o s 10000"
    assert all(len(commit_payload("o", "s", ticks(n))) <= PAYLOAD_MAX for n in range(1, 200))
