"""Commits made by other processes on one Postgres database, woken by LISTEN/NOTIFY.

Each commit of the log sends, inside its own transaction (so it is delivered if and only if
the events are committed: `notify_commits`, a commit hook of the log), one notification per
session it touched: "<origin> <session id> <head seq>", followed, when they fit in a
payload, by the events it committed there (`commit_payload`). Every process keeps one
listening connection. For a session watched here, a notification from another origin hands
its events to every subscriber in memory (the same fan-out as this process's own commits):
a thousand streams on one session cost no database read at all. A notification without its
events (they were too large) makes this process read them once, for all its subscribers.
Anything the in-memory path cannot vouch for (a hole, a failed read) wakes subscribers as
"read the log after your position" (the hub's overflow): the log stays the source of truth
and a stream sends each seq once, in order (it drops what it sent, and reads the log at a
hole). After the listening connection is lost, every subscriber is woken that way:
notifications sent meanwhile are gone, the table is not.

Why the events ride in the notification: with only the head in it, each API process read
every commit of another process back from the table before its streams could have it. On
a busy machine that read (a thread, the GIL, a round trip) was most of a commit's way to
the screen: 2 API processes + 2 workers, 1,000 streams, p50 ts->read 70-300 ms, tails
over 1 s, before any stream was woken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tether.db.pg_writer import Stmt
from tether.events.hub import MemoryHub
from tether.model import Event

if TYPE_CHECKING:
    from tether.events.log import CommitHook, EventLog

log = logging.getLogger(__name__)

CHANNEL = "tether_events"
CANCEL_CHANNEL = "tether_cancel"  # payload: "<origin> <task id> <task id> ..."
SIGNOUT_CHANNEL = "tether_signout"  # payload: "<origin> <auth session id> <reason>"
QUEUED_CHANNEL = "tether_queued"  # no payload: a task was queued; workers look now
PAYLOAD_MAX = 7000  # Postgres refuses notification payloads of 8,000 bytes or more


def new_origin() -> str:
    return uuid.uuid4().hex[:16]


def notify_commits(origin: str) -> CommitHook:
    """The log's commit hook on a shared database (`EventLog.add_commit_hook`): in the
    committing transaction, one notification per session it wrote to, in one statement."""

    def notify(committed: dict[str, list[Event]]) -> list[Stmt]:
        payloads = [commit_payload(origin, sid, evs) for sid, evs in committed.items()]
        return [Stmt(_NOTIFY, (payloads,))]

    return notify


# The least an event takes in a payload besides its data (seq, ts, nulls, a type, quoting):
# what cannot fit is known before anything is encoded.
_EVENT_MIN = 40


def commit_payload(origin: str, session_id: str, events: list[Event]) -> str:
    """The notification of a commit to one session: "<origin> <session id> <head seq>",
    then a line of its events' fields as JSON when the whole fits in a notification
    (ASCII: its length is its size in bytes)."""
    head = f"{origin} {session_id} {events[-1].seq}"
    room = PAYLOAD_MAX - len(head)
    # Counted before anything is encoded: a commit of thousands of events costs nothing here.
    if _EVENT_MIN * len(events) <= room and sum(len(e.data) for e in events) <= room:
        rows = [[e.seq, e.task_id, e.parent_task_id, e.type, e.data, e.ts] for e in events]
        body = json.dumps(rows, separators=(",", ":"), allow_nan=False)
        if 1 + len(body) <= room:
            return f"{head}\n{body}"
    return head


def parse_payload(payload: str) -> tuple[str, str, int, list[Event] | None]:
    """(origin, session id, head seq, the events or None), or ValueError. Events that are
    not the consecutive seqs up to the head are refused: the log is read instead."""
    line, _, body = payload.partition("\n")
    origin, session_id, seq = line.split(" ")
    head = int(seq)
    if not body:
        return origin, session_id, head, None
    try:
        rows = json.loads(body)
        events = [
            Event(int(r[0]), session_id, r[1], r[2], str(r[3]), str(r[4]), float(r[5]))
            for r in rows
        ]
    except (ValueError, TypeError, IndexError, KeyError):
        return origin, session_id, head, None
    if not events or [e.seq for e in events] != list(range(head - len(events) + 1, head + 1)):
        return origin, session_id, head, None
    return origin, session_id, head, events


_NOTIFY = f"SELECT pg_notify('{CHANNEL}', p) FROM unnest(%s::text[]) AS p"


def notify_cancel(conn: sa.Connection, origin: str, task_ids: list[str]) -> None:
    """Ask every process to stop the coroutines of these tasks (chunked to fit a payload)."""
    chunks: list[str] = []
    line = origin
    for tid in task_ids:
        if len(line) + 1 + len(tid) > PAYLOAD_MAX:
            chunks.append(line)
            line = origin
        line += " " + tid
    chunks.append(line)
    conn.exec_driver_sql(
        f"SELECT pg_notify('{CANCEL_CHANNEL}', p) FROM unnest(%s::text[]) AS p", (chunks,)
    )


def notify_signout(conn: sa.Connection, origin: str, auth_session_id: str, reason: str) -> None:
    """Ask every process to close the streams of this ended sign-in now."""
    payload = f"{origin} {auth_session_id} {reason}"[:PAYLOAD_MAX]
    conn.exec_driver_sql("SELECT pg_notify(%s, %s)", (SIGNOUT_CHANNEL, payload))


def notify_queued(conn: sa.Connection) -> None:
    """Tell every worker that a task was put on a queue (after the put committed)."""
    conn.exec_driver_sql(f"NOTIFY {QUEUED_CHANNEL}")


_FEED_PAGE = 2000
_FEED_PAGE_BYTES = 4 << 20


class RemoteFeed:
    """Events committed by other processes, from their notifications (or read once per
    watched session when a notification could not carry them) and published to the hub like
    this process's own commits."""

    def __init__(self, log: EventLog, hub: MemoryHub) -> None:
        self.log, self.hub = log, hub
        self.reads = 0
        # session -> newest seq its subscribers here were given, with every seq before it
        # (from the table, or this process's commits)
        self._have: dict[str, int] = {}
        self._want: dict[str, int] = {}  # session -> newest head committed, here or notified
        self._busy: dict[str, asyncio.Task[None]] = {}

    def on_commit(self, session_id: str, events: list[Event]) -> None:
        """This process's own commit: to the subscribers at once when it follows what they
        were given; when another process's commit before it is not read yet, the feed reads
        that and this in one read, in order. Published as they came, each subscriber would
        see a hole, and read the log itself: one read per stream."""
        if not self.hub.watched(session_id):
            self._have.pop(session_id, None)
            self._want.pop(session_id, None)
            return
        have = self._have.get(session_id)
        if have is None:  # no other process's commit seen here yet
            self.hub.publish(session_id, events)
            return
        if events[-1].seq <= have:  # a read had them already
            return
        if session_id not in self._busy and events[0].seq <= have + 1:
            self._have[session_id] = events[-1].seq
            self.hub.publish(session_id, events)
            return
        self._want[session_id] = max(self._want.get(session_id, 0), events[-1].seq)
        if session_id not in self._busy:
            self._busy[session_id] = asyncio.create_task(self._read(session_id))

    def on_head(self, session_id: str, head: int, events: list[Event] | None = None) -> None:
        """Another process committed to the session up to `head`: `events`, when its
        notification carried them (consecutive seqs ending at `head`)."""
        if not self.hub.watched(session_id):
            self._have.pop(session_id, None)
            self._want.pop(session_id, None)
            return
        have = self._have.get(session_id)
        if have is None:
            # First news of this session here. With the events, each subscriber takes them
            # (one that is further behind reads the log at the hole, as streams do);
            # without, each reads from its own position.
            self._have[session_id] = head
            if events is None:
                self.hub.publish_head(session_id, head)
            else:
                self.hub.publish(session_id, events)
            return
        if head <= max(have, self._want.get(session_id, 0)):
            return
        if events is not None and session_id not in self._busy and events[0].seq <= have + 1:
            self._have[session_id] = head
            self.hub.publish(session_id, [e for e in events if e.seq > have])
            return
        self._want[session_id] = head
        if session_id not in self._busy:
            self._busy[session_id] = asyncio.create_task(self._read(session_id))

    def forget(self) -> None:
        """Notifications may have been missed: start again from each subscriber's position."""
        self._have.clear()
        self._want.clear()

    async def _read(self, session_id: str) -> None:
        try:
            while (want := self._want.get(session_id, 0)) > (
                have := self._have.get(session_id, want)
            ):
                self.reads += 1
                events = await self.log.read_after(session_id, have, _FEED_PAGE, _FEED_PAGE_BYTES)
                if not events or events[0].seq != have + 1:  # pruned meanwhile, or not there
                    self._have[session_id] = want
                    self.hub.publish_head(session_id, want)
                    break
                self._have[session_id] = events[-1].seq
                self.hub.publish(session_id, events)
        except Exception:
            log.exception("reading another process's commits to %s failed", session_id)
            self._have.pop(session_id, None)
            self.hub.publish_head(session_id, self._want.get(session_id, 0))
        finally:
            del self._busy[session_id]

    async def stop(self) -> None:
        for task in list(self._busy.values()):
            task.cancel()
        await asyncio.gather(*self._busy.values(), return_exceptions=True)


class PgListener:
    def __init__(self, url: str, origin: str, hub: MemoryHub, feed: RemoteFeed) -> None:
        self.url = (
            sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self.origin, self.hub, self.feed = origin, hub, feed
        self.received = 0
        self.on_head: list[Callable[[str, int], None]] = []  # (session id, head seq)
        self.on_relisten: list[Callable[[], None]] = []  # notifications may have been missed
        self.on_cancel: list[Callable[[list[str]], None]] = []
        self.on_signout: list[Callable[[str, str], None]] = []
        self.on_queued: list[Callable[[], None]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tether-pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.feed.stop()

    async def _run(self) -> None:
        import psycopg

        attempt = 0
        while True:
            try:
                conn: Any = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    await conn.execute(f"LISTEN {SIGNOUT_CHANNEL}")
                    await conn.execute(f"LISTEN {QUEUED_CHANNEL}")
                    if attempt:
                        self.feed.forget()
                        self.hub.wake_all()  # what was sent while we were away is in the table
                        _call(self.on_relisten)
                        _call(self.on_queued)  # tasks queued meanwhile: look for them
                    attempt = 0
                    self.ready.set()
                    async for n in conn.notifies():
                        if n.channel == CANCEL_CHANNEL:
                            self._on_cancel(n.payload)
                        elif n.channel == SIGNOUT_CHANNEL:
                            self._on_signout(n.payload)
                        elif n.channel == QUEUED_CHANNEL:
                            _call(self.on_queued)
                        else:
                            self._on(n.payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the database went away: listen again
                self.ready.clear()
                attempt += 1
                log.warning("listening for other processes' commits failed (%s); retrying", e)
                await asyncio.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))

    def _on(self, payload: str) -> None:
        if payload.startswith(self.origin + " "):
            return  # this process's own commit (its hub has the events): nothing to parse
        try:
            origin, session_id, head, events = parse_payload(payload)
        except ValueError:
            log.warning("ignored a malformed notification %r", payload[:200])
            return
        if origin == self.origin:
            return  # this process's own commit: its hub already has the events
        self.received += 1
        self.feed.on_head(session_id, head, events)
        _call(self.on_head, session_id, head)

    def _on_cancel(self, payload: str) -> None:
        origin, *task_ids = payload.split(" ")
        if origin != self.origin:  # cancelled here: its own coroutines are stopped already
            _call(self.on_cancel, task_ids)

    def _on_signout(self, payload: str) -> None:
        origin, sid, reason = (payload.split(" ", 2) + ["", ""])[:3]
        if origin != self.origin and sid:
            _call(self.on_signout, sid, reason)


def _call(callbacks: list[Callable[..., None]], *args: Any) -> None:
    for callback in callbacks:
        try:
            callback(*args)
        except Exception:
            log.exception("notification callback failed")
