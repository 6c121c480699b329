"""The SSE stream of one session: snapshot, backlog after the cursor, then live events.

Order matters: the route subscribes to the hub *before* it reads the snapshot and the log,
so an event committed in between is both read and pushed; the stream drops any seq it has
already sent. Log events carry `id: <seq>` (the resume cursor); the snapshot and heartbeats
carry no id, so they never move a client's Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from tether.events.frames import Frames, SharedReads
from tether.events.hub import Subscription, ticket
from tether.model import Event, dumps

PAGE = 2000
PAGE_BYTES = 4 << 20  # one catch-up page holds at most about this much event data
FIRST_PAGE = 50
FIRST_PAGE_BYTES = 1 << 20


def event_frames(events: list[Event]) -> str:
    return "".join([e.frame() for e in events])


def named_frame(name: str, payload: str) -> str:
    return f"event: {name}\ndata: {payload}\n\n"


class Gap(Exception):
    """The log no longer holds the events right after the stream's position (retention
    pruned them while the stream was behind): the client must rebuild from a snapshot."""


async def session_stream(
    sub: Subscription,
    reads: SharedReads,
    snapshot: str,
    cursor: int,
    heartbeat_s: float,
    retry_ms: int,
    auth_ended: Callable[[], Awaitable[str | None]],
    first: Frames,
    more: bool,
) -> AsyncIterator[str]:
    """`first` is the first page after the cursor, read with the snapshot (starting at
    cursor + 1), as frames; `more`, whether the log may hold more after it. `auth_ended` is asked at each heartbeat: a reason ends
    the stream with an `auth` event (the sign-in was revoked or expired; an access token
    that merely aged out does not); a sign-out in this process ends it at once."""
    try:
        head = f"retry: {retry_ms}\n: tether stream\n\n" + named_frame("snapshot", snapshot)
        pos = _Position(first.last or cursor)
        yield head + first.text
        try:
            if more:
                async for chunk in _catch_up(reads, sub.session_id, pos, sub.since):
                    yield chunk
            loop = asyncio.get_running_loop()
            next_beat = loop.time() + heartbeat_s
            while True:
                if not sub.wake.is_set():
                    # The heartbeat's time wakes it too: a timer, not a timeout (with two
                    # thousand streams, raising and catching TimeoutError at each heartbeat
                    # cost a seventh of the loop's time).
                    timer = loop.call_at(next_beat, sub.wake.set)
                    try:
                        await sub.wake.wait()
                    finally:
                        timer.cancel()
                if sub.hung_up:
                    return
                if sub.closing:
                    yield f"retry: {retry_ms}\n" + named_frame(
                        "shutdown", dumps({"reason": "server restarting", "retry_ms": retry_ms})
                    )
                    return
                if sub.ended is not None:
                    yield named_frame("auth", dumps({"reason": sub.ended}))
                    return
                events, overflow = sub.take()
                if overflow or (events and events[0].seq > pos.last + 1):
                    # What was not pushed to it was committed before it was marked; a gap
                    # in what was pushed, before now.
                    since = sub.dropped if overflow else ticket()
                    async for chunk in _catch_up(reads, sub.session_id, pos, since):
                        yield chunk
                else:
                    fresh = [e for e in events if e.seq > pos.last]
                    if fresh:
                        pos.last = fresh[-1].seq
                        yield event_frames(fresh)
                now = loop.time()
                if now >= next_beat:
                    next_beat = now + heartbeat_s
                    reason = await auth_ended()
                    if reason is not None:
                        yield named_frame("auth", dumps({"reason": reason}))
                        return
                    beat = dumps({"server_time": time.time(), "head_seq": max(sub.head, pos.last)})
                    yield ": ping\n\n" + named_frame("heartbeat", beat)
        except Gap as gap:
            yield named_frame("gone", dumps({"reason": str(gap), "after": pos.last}))
            return
    finally:
        sub.close()


def ends_at(
    body: AsyncIterator[str], sub: Subscription, at: float, reason: str
) -> AsyncIterator[str]:
    """The stream, ended with an `auth` event at wall-clock time `at` (a share link's
    expiry), not at the first heartbeat after it."""

    async def run() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(0.0, at - time.time()), sub.end, reason)
        try:
            async for chunk in body:
                yield chunk
        finally:
            timer.cancel()

    return run()


class _Position:
    __slots__ = ("last",)

    def __init__(self, last: int) -> None:
        self.last = last


async def _catch_up(
    reads: SharedReads, session_id: str, pos: _Position, since: int
) -> AsyncIterator[str]:
    """The log after pos, page by page, up to its head as read after `since` (a ticket
    taken when every commit not pushed to this stream had been made)."""
    while True:
        page = await reads.after(session_id, pos.last, PAGE, PAGE_BYTES, since)
        if page.count and page.first != pos.last + 1:
            raise Gap(
                f"events {pos.last + 1}..{page.first - 1} were pruned while this stream "
                "was behind; reconnect from your last seq to rebuild from a snapshot"
            )
        if page.count:
            pos.last = page.last
            yield page.text
        if not page.full(PAGE, PAGE_BYTES):
            return
