"""Live wake-ups for stream readers.

The hub is told about every commit (session id + the committed events). A subscriber gets
the events in memory when it can take them, so a thousand streams on one session cost one
database read in total, not a thousand. A subscriber that falls too far behind, or a backend
that only carries "session X reached seq N" (Postgres NOTIFY), is marked `overflow` and
reads the log itself: the log, not the hub, is the source of truth.
"""

from __future__ import annotations

import asyncio

from tether.model import Event

MAX_PENDING = 5_000


class Subscription:
    __slots__ = ("session_id", "pending", "overflow", "closing", "wake", "_hub")

    def __init__(self, hub: MemoryHub, session_id: str) -> None:
        self._hub = hub
        self.session_id = session_id
        self.pending: list[Event] = []
        self.overflow = False
        self.closing = False
        self.wake = asyncio.Event()

    def push(self, events: list[Event] | None) -> None:
        if events is None or self.overflow or len(self.pending) + len(events) > MAX_PENDING:
            self.overflow = True
            self.pending.clear()
        else:
            self.pending.extend(events)
        self.wake.set()

    def take(self) -> tuple[list[Event], bool]:
        """Events pushed since the last take, and whether some were not kept (read the log)."""
        events, overflow = self.pending, self.overflow
        self.pending, self.overflow = [], False
        self.wake.clear()
        return events, overflow

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

    def subscribe(self, session_id: str) -> Subscription:
        sub = Subscription(self, session_id)
        self._subs.setdefault(session_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.session_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.session_id]

    def publish(self, session_id: str, events: list[Event] | None) -> None:
        for sub in self._subs.get(session_id, ()):
            sub.push(events)

    def close_all(self) -> None:
        """Ask every open stream to end (the server is stopping)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.closing = True
                sub.wake.set()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())
