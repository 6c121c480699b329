"""A session's live stream that holds: every event once, in seq order, whatever the network.

The browser client's rules (tether/web/static/client.js), for a script:

- resume from the last seq seen (`Last-Event-ID`), and drop any seq already yielded;
- reconnect forever, with full-jitter backoff (0.5 s .. 20 s), at once after a stream that
  had been live, a refreshed token, or a rebuild;
- a stall watchdog: no byte for 2.5 heartbeats and the connection is dead, whatever the
  socket says;
- 401: refresh the token and reconnect; 410 (the cursor was pruned): yield a `Reset` with
  the server's snapshot, then the log from the snapshot's first seq; another 4xx: raise it.
"""

from __future__ import annotations

import asyncio
import codecs
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from tether.client.auth import backoff
from tether.client.errors import ConnectionLost, Gone, ServerError, error_for, parse
from tether.client.http import Http
from tether.web.schemas import EventOut, EventPage

StateKind = Literal["connecting", "live", "reconnecting", "offline", "stopped"]


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Where the stream's connection is. `next_try_at` (epoch seconds): when a reconnect
    is due; `reason`: why the last connection ended."""

    kind: StateKind
    attempt: int = 0
    next_try_at: float | None = None
    reason: str | None = None
    since: float = field(default_factory=time.time)


class Snapshot(BaseModel):
    """A stream's first frame, and what a 410 carries: the session's head and the tasks'
    statuses (summaries: no input or result)."""

    model_config = ConfigDict(extra="allow")
    session_id: str
    head_seq: int
    first_seq: int
    heartbeat_s: float | None = None  # (none in a 410's)
    server_time: float | None = None
    task_count: int = 0
    tasks_truncated: bool = False
    tasks: list[dict[str, Any]] = []


class Heartbeat(BaseModel):
    """The server is there: its time and its head seq (yielded with `control=True`)."""

    server_time: float
    head_seq: int


@dataclass(frozen=True, slots=True)
class Reset:
    """The stream's cursor was older than what the server keeps (410): drop what was built
    from the events so far; the events from `snapshot.first_seq` on follow."""

    snapshot: Snapshot


StreamItem = EventOut | Reset | Snapshot | Heartbeat | ConnectionState


@dataclass(slots=True)
class _Outcome:
    """How one connection ended: `now` reconnect at once; `live` it had been live (the
    backoff starts over)."""

    reason: str = "stream ended"
    now: bool = False
    live: bool = False


class EventStream:
    """`async for item in stream`: the session's events (`EventOut`), in seq order, each
    once, from `after` on, for as long as you iterate; a `Reset` when the server no longer
    had the events after the cursor. With `control=True`, also each `Snapshot`,
    `Heartbeat` and `ConnectionState` change as they happen.

    `state`, `cursor`, `snapshot`, `reconnects` and `resets` can be read at any time. Close
    it with `aclose()` (or use it as an async context manager).
    """

    def __init__(
        self,
        http: Http,
        session_id: str,
        *,
        after: int = 0,
        control: bool = False,
        min_delay: float = 0.5,
        max_delay: float = 20.0,
        offline_after: int = 3,
        offline_after_s: float = 10.0,
        seed: int | None = None,
    ) -> None:
        self._http = http
        self.session_id = session_id
        self.cursor = after
        self.control = control
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.offline_after = offline_after
        self.offline_after_s = offline_after_s
        self.heartbeat_s = 15.0
        self.state = ConnectionState("connecting")
        self.snapshot: Snapshot | None = None
        self.reconnects = 0
        self.resets = 0
        self._rng = random.Random(seed)
        self._pending: list[StreamItem] = []
        self._wake = asyncio.Event()
        self._last_live = time.monotonic()
        self._gen = self._run()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamItem:
        return await self._gen.__anext__()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # A read just cancelled elsewhere (a Ctrl-C in the sync client) ends on its own.
        for _ in range(200):
            if not getattr(self._gen, "ag_running", False):
                break
            await asyncio.sleep(0.01)
        await self._gen.aclose()
        self._set_state(ConnectionState("stopped", reason="closed"))

    def poke(self) -> None:
        """Reconnect now instead of after the backoff (the network is back)."""
        self._wake.set()

    def _set_state(self, state: ConnectionState) -> None:
        self.state = state
        if self.control:
            self._pending.append(state)

    def _flush(self) -> list[StreamItem]:
        out, self._pending = self._pending, []
        return out

    async def _run(self) -> AsyncGenerator[StreamItem]:
        attempt = 0
        try:
            while True:
                kind: StateKind = "connecting" if attempt == 0 else "reconnecting"
                self._set_state(ConnectionState(kind, attempt, time.time()))
                for item in self._flush():
                    yield item
                outcome = _Outcome()
                async for item in self._connect(attempt, outcome):
                    for queued in self._flush():
                        yield queued
                    yield item
                for item in self._flush():
                    yield item
                self.reconnects += 1
                if outcome.live:
                    attempt = 0
                if outcome.now:
                    continue
                attempt += 1
                delay = backoff(attempt, self.min_delay, self.max_delay, self._rng.random())
                offline = (
                    attempt >= self.offline_after
                    and time.monotonic() - self._last_live >= self.offline_after_s
                )
                self._set_state(
                    ConnectionState(
                        "offline" if offline else "reconnecting",
                        attempt,
                        time.time() + delay,
                        outcome.reason,
                    )
                )
                for item in self._flush():
                    yield item
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
        except BaseException as exc:
            self.state = ConnectionState("stopped", reason=repr(exc))
            raise

    async def _connect(self, attempt: int, outcome: _Outcome) -> AsyncIterator[StreamItem]:
        tokens = self._http.tokens
        try:
            auth = await tokens.header(patient=False)
        except (ConnectionLost, ServerError) as exc:  # the refresh could not reach the server
            outcome.reason = str(exc)
            return
        headers = {**auth, "accept": "text/event-stream"}
        params = {}
        if self.cursor > 0:
            headers["last-event-id"] = str(self.cursor)
            # Resuming, the events after the cursor say every change since the snapshot.
            params["tasks"] = "0"
        url = f"/api/sessions/{self.session_id}/stream"
        try:
            async with self._http.client.stream(
                "GET", url, headers=headers, params=params, timeout=httpx.Timeout(10, read=None)
            ) as r:
                status = r.status_code
                if status == 401:
                    await r.aread()
                    if tokens.refresh_token is None and not tokens.can_renew:
                        raise error_for(r)
                    await tokens.refresh(
                        auth["authorization"].removeprefix("Bearer "), patient=False
                    )
                    outcome.now, outcome.reason = attempt < 2, "token refreshed"
                    return
                if status == 410:
                    await r.aread()
                    async for item in self._rebuild(error_for(r).problem.snapshot or {}):
                        yield item
                    outcome.now, outcome.reason = True, "rebuilt from the snapshot"
                    return
                if 400 <= status < 500 and status not in (408, 429):
                    await r.aread()
                    raise error_for(r)
                if status >= 300:
                    outcome.reason = f"HTTP {status}"
                    return
                async for item in self._read(r, outcome):
                    yield item
        except httpx.TransportError as exc:
            outcome.reason = repr(exc)
        except (ConnectionLost, ServerError) as exc:  # a refresh or a catch-up page failed
            outcome.reason = str(exc)

    async def _read(self, r: httpx.Response, outcome: _Outcome) -> AsyncIterator[StreamItem]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunks = r.aiter_raw()
        buf = ""
        while True:
            try:
                # Not a byte for 2.5 heartbeats: the connection is dead, whatever it says.
                # (The timeout covers the read only: never the caller's time between items.)
                async with asyncio.timeout(self.heartbeat_s * 2.5):
                    chunk = await chunks.__anext__()
            except TimeoutError:
                outcome.reason = "stalled"
                return
            except StopAsyncIteration:
                return
            buf += decoder.decode(chunk).replace("\r\n", "\n")
            *blocks, buf = buf.split("\n\n")
            for block in blocks:
                event, data = _frame(block)
                if data is None:
                    continue
                if event == "message":
                    ev = parse(EventOut, data, "an event")
                    if ev.seq <= self.cursor:
                        continue  # seen already: each event once
                    if ev.seq != self.cursor + 1:
                        outcome.now, outcome.reason = True, f"gap after {self.cursor}"
                        return
                    self.cursor = ev.seq
                    yield ev
                elif event == "snapshot":
                    snap = parse(Snapshot, data, "a snapshot")
                    self.snapshot = snap
                    self.heartbeat_s = snap.heartbeat_s or self.heartbeat_s
                    outcome.live = True
                    self._last_live = time.monotonic()
                    self._set_state(ConnectionState("live"))
                    if self.control:
                        yield snap
                elif event == "heartbeat":
                    self._last_live = time.monotonic()
                    if self.control:
                        yield parse(Heartbeat, data, "a heartbeat")
                elif event == "auth":
                    # The sign-in behind this stream ended: a refresh says whether to go on.
                    await self._http.tokens.refresh(self._http.tokens.token, patient=False)
                    outcome.now, outcome.reason = True, "signed in again"
                    return
                elif event == "shutdown":
                    outcome.reason = "server restarting"
                    return
                elif event == "gone":
                    # Pruned while behind: the next connect answers 410 with a snapshot.
                    outcome.now, outcome.reason = True, "events pruned while behind"
                    return

    async def _rebuild(self, snapshot: dict[str, Any]) -> AsyncIterator[StreamItem]:
        """Start over from the snapshot: say so, then read the log from its first seq."""
        snap = Snapshot.model_validate(snapshot)
        self.snapshot = snap
        self.cursor = snap.first_seq - 1
        self.resets += 1
        yield Reset(snap)
        while True:
            try:
                page = await self._http.model(
                    EventPage,
                    "GET",
                    f"/api/sessions/{self.session_id}/events",
                    params={"after": self.cursor},
                )
            except Gone as exc:  # pruned again while reading: start over from the newer one
                async for item in self._rebuild(exc.snapshot or {}):
                    yield item
                return
            for ev in page.events:
                if ev.seq == self.cursor + 1:
                    self.cursor = ev.seq
                    yield ev
            if not page.more:
                return


def _frame(block: str) -> tuple[str, str | None]:
    """(event name, data) of one SSE frame; data None for a comment or retry line."""
    event, data = "message", []
    for line in block.split("\n"):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    return event, ("\n".join(data) if data else None)
