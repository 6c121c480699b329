"""Live wake-ups for stream readers.

The hub is told about every commit (session id + the committed events). A subscriber gets
the events in memory when it can take them, so a thousand streams on one session cost one
database read in total, not a thousand. A subscriber that falls too far behind, or a backend
that only carries "session X reached seq N" (Postgres NOTIFY), is marked `overflow` and
reads the log itself: the log, not the hub, is the source of truth.
"""

from __future__ import annotations

import asyncio
import itertools

from tether.model import Event, events_size

# What one subscriber may hold in memory before it must read the log itself: a stream whose
# client does not read costs at most this much, whatever the size of the events.
MAX_PENDING = 5_000
MAX_PENDING_BYTES = 1 << 20

_order = itertools.count(1)


def ticket() -> int:
    """A place in the order of this process's subscriptions and log reads (all on one event
    loop): a read that began after a subscription's ticket sees every commit the
    subscription was not told of (`frames.SharedReads`)."""
    return next(_order)


class Wake:
    """asyncio.Event's is_set, set, clear and wait, for one waiter (a stream's own task):
    a commit wakes every subscriber of its session, so this is on the path of each
    delivery, and one future costs less than Event's list of them."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None


class Subscription:
    __slots__ = (
        "session_id",
        "auth_session_id",
        "since",
        "dropped",
        "pending",
        "pending_bytes",
        "overflow",
        "closing",
        "ended",
        "hung_up",
        "head",
        "last",
        "wake",
        "_hub",
    )

    def __init__(self, hub: MemoryHub, session_id: str, auth_session_id: str | None) -> None:
        self._hub = hub
        self.session_id = session_id
        self.auth_session_id = auth_session_id
        self.pending: list[Event] = []
        self.pending_bytes = 0
        self.overflow = False
        self.closing = False
        self.ended: str | None = None  # why the sign-in behind this stream ended
        self.hung_up = False  # the client went away
        self.head = 0  # the newest seq committed to the session that this process knows of
        # The newest seq pushed (or, after "read the log", known to be there): what comes
        # next must follow it. On a shared database a commit here and one read from another
        # process's can overlap or leave a hole; a hole means "read the log".
        self.last = 0
        self.wake = Wake()
        # Every commit from here on is pushed to it (or marks it `overflow`).
        self.since = ticket()
        # When it was last marked `overflow`: every commit it was not given came before.
        self.dropped = 0

    def push(self, events: list[Event] | None, size: int = 0, head: int = 0) -> None:
        self.head = max(self.head, head, events[-1].seq if events else 0)
        if events and self.last and events[0].seq <= self.last:
            events = [e for e in events if e.seq > self.last]  # pushed already
            if not events:
                return
            size = events_size(events)
        gap = bool(events) and self.last and events[0].seq != self.last + 1  # type: ignore[index]
        self.last = max(self.last, head, events[-1].seq if events else 0)
        if (
            events is None
            or gap
            or self.overflow
            or len(self.pending) + len(events) > MAX_PENDING
            or self.pending_bytes + size > MAX_PENDING_BYTES
        ):
            self.overflow = True
            self.dropped = ticket()
            self.pending.clear()
            self.pending_bytes = 0
        else:
            self.pending.extend(events)
            self.pending_bytes += size
        self.wake.set()

    def take(self) -> tuple[list[Event], bool]:
        """Events pushed since the last take, and whether some were not kept (read the log)."""
        events, overflow = self.pending, self.overflow
        self.pending, self.overflow, self.pending_bytes = [], False, 0
        self.wake.clear()
        return events, overflow

    def hang_up(self) -> None:
        """The client went away: the stream ends at its next wake-up, now."""
        self.hung_up = True
        self.wake.set()

    def end(self, reason: str) -> None:
        self.ended = reason
        self.wake.set()

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryHub:
    """In-process fan-out: the embedded default."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._by_auth: dict[str, set[Subscription]] = {}

    def subscribe(self, session_id: str, auth_session_id: str | None = None) -> Subscription:
        sub = Subscription(self, session_id, auth_session_id)
        self._subs.setdefault(session_id, set()).add(sub)
        if auth_session_id is not None:
            self._by_auth.setdefault(auth_session_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        for index, key in ((self._subs, sub.session_id), (self._by_auth, sub.auth_session_id)):
            if key is None:
                continue
            subs = index.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del index[key]

    def publish(self, session_id: str, events: list[Event] | None) -> None:
        subs = self._subs.get(session_id)
        if subs:
            size = events_size(events) if events else 0
            for sub in subs:
                sub.push(events, size)

    def watched(self, session_id: str) -> bool:
        return session_id in self._subs

    def publish_head(self, session_id: str, head: int) -> None:
        """Another process committed to the session up to `head`: its subscribers here read
        the log after their position."""
        for sub in self._subs.get(session_id, ()):
            sub.push(None, head=head)

    def wake_all(self) -> None:
        """Every subscriber reads the log after its position (commits may have gone unseen)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.push(None)

    def end_sign_in(self, auth_session_id: str, reason: str) -> None:
        """The sign-in ended (signed out, revoked): its open streams close now, not at their
        next heartbeat."""
        for sub in self._by_auth.get(auth_session_id, ()):
            sub.end(reason)

    def close_all(self) -> None:
        """Ask every open stream to end (the server is stopping)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.closing = True
                sub.wake.set()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())
