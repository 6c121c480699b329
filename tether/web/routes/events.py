"""The log of a session, as JSON pages and as an SSE stream."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query
from pydantic import StringConstraints
from starlette.responses import Response, StreamingResponse

from tether.auth.shares import ENDED
from tether.errors import BadRequest, CursorGone
from tether.events import reader
from tether.events.stream import ends_at, session_stream
from tether.web import render
from tether.web.bodies import StrictRoute
from tether.web.deps import Auth, Reader, Svc
from tether.web.problems import problems
from tether.web.responses import EventStreamResponse
from tether.web.schemas import EventPage

router = APIRouter(prefix="/api/sessions", tags=["events"], route_class=StrictRoute)


_STREAM_DOC = {
    "description": "An endless `text/event-stream`: `snapshot`, the events after the cursor "
    "(each with `id: <seq>`), then live events, `heartbeat`s, and at the end `shutdown`, "
    "`auth` or `gone`.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_MAX_CURSOR = 2**62
CURSOR_PATTERN = r"^[0-9]{1,18}$"  # a seq: 18 digits stay below _MAX_CURSOR


def parse_cursor(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_CURSOR:
        raise BadRequest(f"{name} must be a non-negative integer (the last seq seen), got {raw!r}")
    return int(text)


def gone(exc: reader.Gone) -> CursorGone:
    """The 410 a client rebuilds from."""
    return CursorGone(exc.detail, snapshot=render.snapshot(exc.snapshot))


@router.get(
    "/{session_id}/events",
    response_model=None,
    responses={200: {"model": EventPage}, **problems(400, 401, 404, 410, 429)},
)
async def list_events(
    session_id: str,
    caller: Reader,
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
    user = caller.user

    def read(c: sa.Connection) -> reader.Page:
        if upto is not None:
            return reader.page_before(c, session_id, user, upto, n, page_bytes, cursor)
        if task is not None:
            return reader.page_of_tasks(c, session_id, user, task, cursor, n, page_bytes, upto)
        snapshot_tasks = svc.settings.snapshot_tasks
        return reader.page_after(c, session_id, user, cursor, n, page_bytes, snapshot_tasks)

    try:
        text = await svc.db.read(lambda c: render.event_page(read(c)))
    except reader.Gone as exc:
        raise gone(exc) from None
    return Response(text, media_type="application/json")


@router.get(
    "/{session_id}/stream",
    response_class=EventStreamResponse,
    responses={200: _STREAM_DOC, **problems(400, 401, 404, 410, 429)},  # 429: max_streams_per_user
)
async def stream_events(
    session_id: str,
    caller: Reader,
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
    # A share link's streams are counted as the link's, not its owner's: readers of a
    # link passed around never take the owner's own streams away.
    holder = caller.user if caller.share is None else caller.share.principal_id
    try:
        slot = svc.streams.take(holder, caller.auth_session_id, session_id, sub)
    except BaseException:
        sub.close()
        raise
    heartbeat_s = svc.settings.heartbeat_s
    full = svc.settings.snapshot_tasks
    limit = full if tasks is None else min(tasks, full)

    try:
        start = await reader.stream_start(
            svc.db,
            svc.mirror,
            session_id,
            caller.user,
            cursor,
            limit,
            full,
            heartbeat_s,
            render.snapshot_text,
        )
    except BaseException as exc:
        sub.close()
        slot.release()
        if isinstance(exc, reader.Gone):
            raise gone(exc) from None
        raise
    sub.head = max(sub.head, start.session.head_seq)
    body = svc.streams.counted(
        slot,
        session_stream(
            sub,
            svc.reads,
            start.snapshot,
            cursor,
            heartbeat_s,
            svc.settings.stream_retry_ms,
            lambda: auth.still_valid(caller),
            start.first,
            start.more,
        ),
    )
    if caller.share is not None and caller.share.expires_at is not None:
        body = ends_at(body, sub, caller.share.expires_at, "this share link expired: " + ENDED)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if svc.settings.mirror_check and start.from_memory:
        headers["X-Tether-Mirror"] = "checked"  # tests: this start was served from memory
    return EventStreamResponse(body, headers=headers, on_disconnect=sub.hang_up)
