"""The log of a session, as JSON pages and as an SSE stream."""

from __future__ import annotations

import time
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query
from pydantic import StringConstraints
from starlette.responses import Response, StreamingResponse

from tether.db.schema import tasks
from tether.db.store import read_session, read_task_summaries
from tether.errors import BadRequest, CursorGone, NotFound
from tether.events.log import page_is_full, read_after, read_before, read_task_events
from tether.events.stream import FIRST_PAGE, FIRST_PAGE_BYTES, session_stream
from tether.model import Event, Session, dumps
from tether.web.bodies import StrictRoute
from tether.web.deps import Auth, Caller, Svc
from tether.web.problems import problems
from tether.web.schemas import EventPage

router = APIRouter(prefix="/api/sessions", tags=["events"], route_class=StrictRoute)


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


_STREAM_DOC = {
    "description": "An endless `text/event-stream`: `snapshot`, the events after the cursor "
    "(each with `id: <seq>`), then live events, `heartbeat`s, and at the end `shutdown`, "
    "`auth` or `gone`.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_MAX_CURSOR = 2**62
CURSOR_PATTERN = r"^[0-9]{1,18}$"  # a seq: 18 digits stay below _MAX_CURSOR
INLINE_TASKS = 50  # a stream on a session with more tasks reads its snapshot on a thread


def parse_cursor(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_CURSOR:
        raise BadRequest(f"{name} must be a non-negative integer (the last seq seen), got {raw!r}")
    return int(text)


def snapshot_of(c: Any, s: Session, limit: int, heartbeat_s: float | None = None) -> dict[str, Any]:
    """A bounded snapshot of the session (task summaries, unfinished tasks first)."""
    summaries, total = read_task_summaries(c, s, limit)
    return {
        "session_id": s.id,
        "heartbeat_s": heartbeat_s,
        "head_seq": s.head_seq,
        "first_seq": s.low_seq + 1,
        "server_time": time.time(),
        "task_count": total,
        "tasks_truncated": total > len(summaries),
        "tasks": summaries,
    }


def gone_reason(cursor: int, s: Session, first: list[Event]) -> str | None:
    """Why events after `cursor` cannot be served from this read, or None if they can. The
    cursor must lie within what the log holds (low_seq <= cursor <= head_seq), and the first
    event read must be cursor + 1: retention may prune between the session read and the
    event read (on Postgres they are separate snapshots). A gap is never served."""
    if cursor < s.low_seq:
        return f"events after seq {cursor} are no longer retained (first kept: {s.low_seq + 1})"
    if cursor > s.head_seq:
        return f"seq {cursor} is beyond the head of this session's log ({s.head_seq})"
    if first and first[0].seq != cursor + 1:
        return f"events after seq {cursor} were pruned while this request ran"
    return None


def raise_gone(c: Any, reason: str, s: Session, limit: int) -> None:
    raise CursorGone(
        reason + "; rebuild from the snapshot and resume from its head_seq",
        snapshot=snapshot_of(c, s, limit),
    )


@router.get(
    "/{session_id}/events",
    response_model=None,
    responses={200: {"model": EventPage}, **problems(400, 401, 404, 410, 429)},
)
async def list_events(
    session_id: str,
    caller: Caller,
    svc: Svc,
    after: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="Return events with seq greater than this."),
    ] = None,
    limit: Annotated[
        int | None,
        Query(ge=1, description="At most this many events (default and maximum: page_limit)."),
    ] = None,
    before: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="The events just before this seq (the tail of the log with "
            "head_seq + 1), in seq order, above `after` if given; `more` says whether older "
            "ones remain.",
        ),
    ] = None,
    task: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] | None,
        Query(
            max_length=100,
            description="Only these tasks' events and their sub-agents' (turns of a long "
            "conversation, read as the page shows them; up to 100), in seq order from `after` "
            "(and below `before`, if given).",
        ),
    ] = None,
) -> Response:
    """The log as JSON pages: events after `after`, in seq order. `more` says whether to ask
    again from `next_after`. A page also stops early at about `page_bytes` of event data.
    With `before`, the page ends just below that seq: a reader can show the tail of a long
    session first and load earlier pages as they are wanted."""
    upto = parse_cursor(before, "before")
    cursor = parse_cursor(after, "after") or 0
    max_limit = svc.settings.page_limit
    n = max_limit if limit is None else limit
    if not 1 <= n <= max_limit:
        raise BadRequest(f"limit must be between 1 and {max_limit}, got {n}")
    page_bytes = svc.settings.page_bytes

    def read(c: Any) -> str:
        s = read_session(c, session_id, caller.user)
        if upto is not None:
            events = read_before(c, session_id, upto, n, page_bytes, cursor)
            older = bool(events) and events[0].seq > max(s.low_seq, cursor) + 1
            return (
                f'{{"session_id":{dumps(session_id)},"head_seq":{s.head_seq},'
                f'"first_seq":{s.low_seq + 1},'
                f'"next_after":{events[-1].seq if events else min(upto - 1, s.head_seq)},'
                f'"next_before":{events[0].seq if events else upto},'
                f'"more":{"true" if older else "false"},'
                f'"events":[{",".join(e.to_json() for e in events)}]}}'
            )
        if task is not None:
            known = c.execute(
                sa.select(sa.func.count())
                .select_from(tasks)
                .where(tasks.c.session_id == session_id, tasks.c.id.in_(set(task)))
            ).scalar_one()
            if known != len(set(task)):
                raise NotFound("a task asked for is not in this session")
            events = read_task_events(c, session_id, task, cursor, n, page_bytes, upto)
            next_after = events[-1].seq if events else cursor
            return (
                f'{{"session_id":{dumps(session_id)},"head_seq":{s.head_seq},'
                f'"first_seq":{s.low_seq + 1},"next_after":{next_after},'
                f'"more":{"true" if page_is_full(events, n, page_bytes) else "false"},'
                f'"events":[{",".join(e.to_json() for e in events)}]}}'
            )
        events = read_after(c, session_id, cursor, n, page_bytes)
        reason = gone_reason(cursor, s, events)
        if reason is not None:
            raise_gone(c, reason, s, svc.settings.snapshot_tasks)
        next_after = events[-1].seq if events else cursor
        return (
            f'{{"session_id":{dumps(session_id)},"head_seq":{max(s.head_seq, next_after)},'
            f'"first_seq":{s.low_seq + 1},"next_after":{next_after},'
            f'"more":{"true" if page_is_full(events, n, page_bytes) else "false"},'
            f'"events":[{",".join(e.to_json() for e in events)}]}}'
        )

    return Response(await svc.db.read(read), media_type="application/json")


@router.get(
    "/{session_id}/stream",
    response_class=EventStreamResponse,
    responses={200: _STREAM_DOC, **problems(400, 401, 404, 410, 429)},  # 429: max_streams_per_user
)
async def stream_events(
    session_id: str,
    caller: Caller,
    svc: Svc,
    auth: Auth,
    after: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="Resume after this seq (Last-Event-ID wins)."),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="The SSE resume cursor: the last seq seen.")
    ] = None,
    tasks: Annotated[
        int | None,
        Query(
            ge=0,
            le=1_000_000,
            description="Most task summaries the snapshot lists (at most the server's "
            "snapshot_tasks, its default). 0 for a client that resumes from a cursor: the "
            "events after it say every change since.",
        ),
    ] = None,
) -> StreamingResponse:
    """Server-sent events: a `snapshot`, then every event after the cursor, then live ones,
    with a `heartbeat` every few seconds. A `gone` event means the events after this
    stream's position were pruned: reconnect with Last-Event-ID and rebuild from the 410."""
    cursor = parse_cursor(last_event_id, "Last-Event-ID")
    if cursor is None:
        cursor = parse_cursor(after, "after") or 0
    # Subscribe before reading, so nothing committed in between is missed.
    sub = svc.hub.subscribe(session_id, caller.auth_session_id)
    try:
        slot = svc.streams.take(caller.user, caller.auth_session_id, session_id, sub)
    except BaseException:
        sub.close()
        raise
    heartbeat_s = svc.settings.heartbeat_s
    full = svc.settings.snapshot_tasks
    limit = full if tasks is None else min(tasks, full)

    def read(c: Any, whole: bool) -> tuple[Session, list[Event], str | None]:
        # The snapshot and the first page of the backlog in one read. A session of a few
        # tasks is read right here on the loop (a hand-off to a thread costs more than the
        # read); a large one (`whole`) on a reader thread, so that ten thousand tasks do not
        # stall every other stream; its snapshot's JSON is made there too.
        s = read_session(c, session_id, caller.user)
        if not whole and limit and s.task_count > INLINE_TASKS:
            return s, [], None
        first = read_after(c, session_id, cursor, FIRST_PAGE, FIRST_PAGE_BYTES)
        reason = gone_reason(cursor, s, first)
        if reason is not None:
            raise_gone(c, reason, s, full)  # a rebuild needs the tasks
        return s, first, dumps(snapshot_of(c, s, limit, heartbeat_s))

    try:
        s, first, snap_text = await svc.db.read(lambda c: read(c, False), inline=True)
        if snap_text is None:
            s, first, snap_text = await svc.db.read(lambda c: read(c, True))
    except BaseException:
        sub.close()
        slot.release()
        raise
    assert snap_text is not None
    sub.head = max(sub.head, s.head_seq)
    body = svc.streams.counted(
        slot,
        session_stream(
            sub,
            svc.log,
            snap_text,
            cursor,
            heartbeat_s,
            svc.settings.stream_retry_ms,
            lambda: auth.still_valid(caller),
            first,
        ),
    )
    return EventStreamResponse(
        body,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
