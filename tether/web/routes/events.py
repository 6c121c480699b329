"""The log of a session, as JSON pages and as an SSE stream."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Header, Query
from starlette.responses import Response, StreamingResponse

from tether.db.store import read_snapshot
from tether.errors import BadRequest, CursorGone
from tether.events.log import read_after
from tether.events.stream import FIRST_PAGE, session_stream
from tether.model import Event, Session, Task, dumps
from tether.web.deps import Auth, Caller, Svc

router = APIRouter(prefix="/api/sessions", tags=["events"])

_MAX_CURSOR = 2**62


def parse_cursor(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_CURSOR:
        raise BadRequest(f"{name} must be a non-negative integer (the last seq seen), got {raw!r}")
    return int(text)


def snapshot(s: Session, tasks: list[Task], heartbeat_s: float | None = None) -> dict[str, Any]:
    return {
        "session_id": s.id,
        "heartbeat_s": heartbeat_s,
        "head_seq": s.head_seq,
        "first_seq": s.low_seq + 1,
        "server_time": time.time(),
        "tasks": [
            {k: v for k, v in t.to_dict().items() if k not in ("input", "result")} for t in tasks
        ],
    }


def check_cursor(cursor: int, s: Session, tasks: list[Task]) -> None:
    """A cursor must lie within what the log holds: low_seq <= cursor <= head_seq."""
    if cursor < s.low_seq:
        raise CursorGone(
            f"events after seq {cursor} are no longer retained (first kept: {s.low_seq + 1}); "
            "rebuild from the snapshot and resume from its head_seq",
            snapshot=snapshot(s, tasks),
        )
    if cursor > s.head_seq:
        raise CursorGone(
            f"seq {cursor} is beyond the head of this session's log ({s.head_seq}); "
            "rebuild from the snapshot and resume from its head_seq",
            snapshot=snapshot(s, tasks),
        )


@router.get("/{session_id}/events")
async def list_events(
    session_id: str,
    caller: Caller,
    svc: Svc,
    after: str | None = Query(None, description="Return events with seq greater than this."),
    limit: str | None = Query(
        None, description="At most this many events (default: the page limit)."
    ),
) -> Response:
    cursor = parse_cursor(after, "after") or 0
    max_limit = svc.settings.page_limit
    n = parse_cursor(limit, "limit")
    if n is None:
        n = max_limit
    if not 1 <= n <= max_limit:
        raise BadRequest(f"limit must be between 1 and {max_limit}, got {n}")
    s, tasks = await svc.store.snapshot(session_id, caller.user)
    check_cursor(cursor, s, tasks)
    events = await svc.log.read_after(session_id, cursor, n)
    next_after = events[-1].seq if events else cursor
    body = (
        f'{{"session_id":{dumps(session_id)},"head_seq":{max(s.head_seq, next_after)},'
        f'"first_seq":{s.low_seq + 1},"next_after":{next_after},'
        f'"more":{"true" if len(events) == n else "false"},'
        f'"events":[{",".join(e.to_json() for e in events)}]}}'
    )
    return Response(body, media_type="application/json")


@router.get("/{session_id}/stream")
async def stream_events(
    session_id: str,
    caller: Caller,
    svc: Svc,
    auth: Auth,
    after: str | None = Query(None, description="Resume after this seq (Last-Event-ID wins)."),
    last_event_id: str | None = Header(None, description="The SSE resume cursor."),
) -> StreamingResponse:
    """Server-sent events: a `snapshot`, then every event after the cursor, then live ones,
    with a `heartbeat` every few seconds."""
    cursor = parse_cursor(last_event_id, "Last-Event-ID")
    if cursor is None:
        cursor = parse_cursor(after, "after") or 0
    # Subscribe before reading, so nothing committed in between is missed.
    sub = svc.hub.subscribe(session_id)

    def read(c: Any) -> tuple[Session, list[Task], list[Event]]:
        # The snapshot and the first page of the backlog in one read: one thread hop
        # before the first missed event is on its way.
        s, tasks = read_snapshot(c, session_id, caller.user)
        check_cursor(cursor, s, tasks)
        return s, tasks, read_after(c, session_id, cursor, FIRST_PAGE)

    try:
        s, tasks, first = await svc.db.read(read, inline=True)
    except BaseException:
        sub.close()
        raise
    body = session_stream(
        sub,
        svc.log,
        dumps(snapshot(s, tasks, svc.settings.heartbeat_s)),
        cursor,
        svc.settings.heartbeat_s,
        svc.settings.stream_retry_ms,
        lambda: auth.still_valid(caller),
        first,
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
