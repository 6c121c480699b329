"""The AG-UI endpoint: an AG-UI client (the `@ag-ui/client` HttpAgent, CopilotKit, …) runs a
model agent on Tether and gets its durability: the run goes on when the client drops, and
the client joins it again from the last frame id it saw (Last-Event-ID), missing nothing and
seeing nothing twice. The mapping of the log onto AG-UI events is `tether.agui`."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import sqlalchemy as sa
from ag_ui import core as ag
from ag_ui._generated.models import ResumeEntry  # ag_ui.core does not re-export it
from fastapi import APIRouter, Header, Path, Query
from pydantic import Field
from starlette.responses import StreamingResponse

from tether import quotas
from tether.agui import Cursor, RunMap, frame_id, parse_cursor
from tether.errors import Conflict, CursorGone, InvalidInput, NotFound
from tether.events import reader
from tether.events.hub import Subscription
from tether.events.log import page_is_full
from tether.events.stream import PAGE, PAGE_BYTES
from tether.llm.new_turn import model_agent, model_agents, start_turn
from tether.model import Event, dumps
from tether.web.bodies import StrictRoute
from tether.web.deps import Auth, Caller, Svc
from tether.web.idempotency import check_storage, idempotent
from tether.web.problems import problems
from tether.web.routes.conversations import title_of
from tether.web.routes.sessions import retitle, runtime_of

router = APIRouter(prefix="/api/agui", tags=["agui"], route_class=StrictRoute)

_SESSION_ID = re.compile(r"^s_[0-9a-f]{16}$")
_TASK_ID = re.compile(r"^t_[0-9a-f]{16,24}$")
MAX_ID = 200  # threadId and runId, in characters

_DOC = {
    "description": "A `text/event-stream` of AG-UI events (`data:` JSON, `id:` the frame id: "
    "the Tether seq it came from, `N.i` for all but the last of a seq's frames), from "
    "RUN_STARTED to RUN_FINISHED or RUN_ERROR. A stream that ends without either was cut: "
    "join the run again with Last-Event-ID.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_LAST_EVENT_ID = Annotated[
    str | None,
    Header(
        pattern=r"^\s*([0-9]{1,18}(\.[0-9]{1,6})?)?\s*$",
        description="Join the run after this frame id (the last one received).",
    ),
]


class RunInput(ag.RunAgentInput):
    """AG-UI's RunAgentInput, its ids bounded (in the schema, so clients and fuzzers know)."""

    thread_id: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    run_id: Annotated[str, Field(min_length=1, max_length=MAX_ID)]


Read = tuple[int, list[Event]]  # a page of a run's events, and the session's head seq


class AguiStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


def _user_text(body: ag.RunAgentInput) -> str:
    """The run's message: the text of the last message, which must be the user's."""
    if not body.messages or body.messages[-1].role != "user":
        raise InvalidInput("the last of `messages` must be the user's message this run answers")
    content = body.messages[-1].content
    if isinstance(content, str):
        text = content
    else:
        if any(not isinstance(p, ag.TextInputContent) for p in content):
            raise InvalidInput("only text parts of a user message are supported")
        text = "\n".join(p.text for p in content if isinstance(p, ag.TextInputContent))
    if not text.strip():
        raise InvalidInput("the user's message is empty")
    if len(text) > 100_000:
        raise InvalidInput("the user's message is longer than 100000 characters")
    return text


def _agent(body: ag.RunAgentInput) -> str | None:
    props = body.forwarded_props
    name = props.get("agent") if isinstance(props, dict) else None
    if name is not None and not isinstance(name, str):
        raise InvalidInput("forwardedProps.agent must be a model agent's name")
    return name


def _flag(body: ag.RunAgentInput, name: str) -> bool:
    props = body.forwarded_props
    value = props.get(name, False) if isinstance(props, dict) else False
    if not isinstance(value, bool):
        raise InvalidInput(f"forwardedProps.{name} must be true or false")
    return value


async def _answer(svc: Svc, caller: Caller, sid: str, resume: list[ResumeEntry]) -> tuple[str, str]:
    """Answer the approvals a run's interrupts asked (an answer given already stands: the
    same request again joins the run that continues). (the turn, the interrupt it
    continues from)."""
    from tether.llm import approvals

    turns = {e.interrupt_id.partition("/")[0] for e in resume}
    if len(turns) != 1:
        raise InvalidInput("`resume` must answer the interrupts of one run")
    turn = turns.pop()
    task = await svc.store.task(turn, caller.user)
    if task.session_id != sid or task.parent_id is not None:
        raise NotFound("no such interrupt in this thread")
    for e in resume:
        aid = e.interrupt_id.partition("/")[2]
        payload = e.payload if isinstance(e.payload, dict) else {}
        approve = e.status == "resolved" and (e.payload is True or payload.get("approve") is True)
        note = payload.get("note")
        try:
            await approvals.answer(
                svc.store,
                turn,
                aid,
                caller.user,
                "approve" if approve else "deny",
                note[:2000] if isinstance(note, str) else None,
            )
        except Conflict:
            pass
    return turn, resume[0].interrupt_id


def _check_ids(thread_id: str, run_id: str) -> None:
    for name, value in (("threadId", thread_id), ("runId", run_id)):
        if not 1 <= len(value) <= MAX_ID:
            raise InvalidInput(f"{name} must be 1 to {MAX_ID} characters")


def _thread_session_id(user: str, thread_id: str) -> str:
    """The session of a thread: a Tether session id names itself; any other thread id (the
    HttpAgent's UUID) names a session of the caller's, the same one every time."""
    if _SESSION_ID.match(thread_id):
        return thread_id
    return "s_" + hashlib.sha256(f"{user}\0agui\0{thread_id}".encode()).hexdigest()[:16]


async def _thread(svc: Svc, caller: Caller, thread_id: str, create: bool) -> tuple[str, bool]:
    """(the thread's session id, whether it is untitled); made on first use when `create`.
    Another's session is a 404, as everywhere."""
    sid = _thread_session_id(caller.user, thread_id)
    try:
        return sid, not (await svc.store.session(sid, caller.user)).title
    except NotFound:
        if not create or _SESSION_ID.match(thread_id):
            raise
    async with svc.db.lock(f"sessions:{caller.user}"):
        try:
            return sid, not (await svc.store.session(sid, caller.user)).title
        except NotFound:
            pass
        if svc.settings.max_sessions_per_user:
            await quotas.check_sessions(svc.db, svc.settings, caller.user)
        await svc.store.create_session(caller.user, "", session_id=sid)
    return sid, True


@router.post(
    "",
    response_class=AguiStreamResponse,
    responses={200: _DOC, **problems(400, 401, 404, 410, 413, 422, 429, 507)},
)
async def run_agent(
    body: RunInput,
    caller: Caller,
    svc: Svc,
    auth: Auth,
    last_event_id: _LAST_EVENT_ID = None,
) -> StreamingResponse:
    """Run a model agent, AG-UI style: `threadId` is a session (yours, made on first use),
    `runId` a turn of it, the last message (the user's) what the turn answers;
    `forwardedProps.agent` picks the model agent (default: the file's default). The run is
    Tether's: it goes on without the client. The same request again (same runId) joins it
    instead of starting another, from Last-Event-ID if sent. Tether keeps the thread's
    history: earlier `messages`, `tools`, `context` and `state` are not read. With
    `forwardedProps.interrupts`, the turn's approvals end the run as AG-UI interrupts, and a
    run with `resume` answers them and continues the turn; without it they are CUSTOM
    events on the open run (docs/agui.md)."""
    cursor = parse_cursor(last_event_id, "Last-Event-ID")
    _check_ids(body.thread_id, body.run_id)
    interrupts = _flag(body, "interrupts")
    if body.resume:
        sid, _ = await _thread(svc, caller, body.thread_id, create=False)
        turn, after = await _answer(svc, caller, sid, body.resume)
        run = RunMap(body.thread_id, body.run_id, turn, interrupts=True, after=after)
        return await _stream(svc, caller, auth, sid, run, cursor)
    text = _user_text(body)
    cfg = model_agent(model_agents(), _agent(body))
    sid, untitled = await _thread(svc, caller, body.thread_id, create=True)
    once = idempotent(caller.user, sid, "agui", body.run_id, {"text": text, "agent": cfg.name})
    await check_storage(svc, caller.user, once)
    task, new = await start_turn(
        runtime_of(svc),
        svc.db,
        svc.settings,
        sid,
        cfg.name,
        text,
        task_id=once.task_id,
        request_hash=once.request_hash,
    )
    if new and untitled:
        await retitle(svc, sid, caller.user, title_of(text))
    run = RunMap(body.thread_id, body.run_id, task.id, interrupts=interrupts)
    return await _stream(svc, caller, auth, sid, run, cursor)


@router.get(
    "/threads/{thread_id}/runs/{run_id}",
    response_class=AguiStreamResponse,
    responses={200: _DOC, **problems(400, 401, 404, 410, 429)},
)
async def join_run(
    thread_id: Annotated[str, Path(min_length=1, max_length=MAX_ID)],
    run_id: Annotated[str, Path(min_length=1, max_length=MAX_ID)],
    caller: Caller,
    svc: Svc,
    auth: Auth,
    last_event_id: _LAST_EVENT_ID = None,
    interrupts: Annotated[
        bool, Query(description="As the run was started: with `forwardedProps.interrupts`.")
    ] = False,
) -> StreamingResponse:
    """Join a run (running or ended) as an AG-UI stream: from its start, or after the frame
    Last-Event-ID names. `runId` is the one the run was started with, or the id of a turn
    started over Tether's own API (`threadId` its session id)."""
    cursor = parse_cursor(last_event_id, "Last-Event-ID")
    sid, _ = await _thread(svc, caller, thread_id, create=False)
    turn = idempotent(caller.user, sid, "agui", run_id, {}).task_id
    assert turn is not None
    for candidate in (turn, run_id if _TASK_ID.match(run_id) else None):
        if candidate is None:
            continue
        try:
            task = await svc.store.task(candidate, caller.user)
        except NotFound:
            continue
        if task.session_id == sid and task.parent_id is None:
            run = RunMap(thread_id, run_id, task.id, interrupts=interrupts)
            return await _stream(svc, caller, auth, sid, run, cursor)
    raise NotFound("no such run in this thread")


async def _stream(
    svc: Svc, caller: Caller, auth: Auth, sid: str, run: RunMap, cursor: Cursor | None
) -> StreamingResponse:
    # Subscribe before reading, so nothing committed in between is missed.
    sub = svc.hub.subscribe(sid, caller.auth_session_id)
    try:
        slot = svc.streams.take(caller.user, caller.auth_session_id, sid, sub)
    except BaseException:
        sub.close()
        raise
    read = _reader(svc, sid, caller.user, run.turn)
    try:
        head, first = await read(0)
        if not first or first[0].type != "task.created" or first[0].task_id != run.turn:
            raise CursorGone("the start of this run is no longer in the log (retention)")
        if cursor is not None and cursor.seq > head:
            raise CursorGone(
                f"Last-Event-ID {cursor.seq} is beyond this thread's newest event ({head}): "
                "join the run from its start"
            )
    except BaseException:
        sub.close()
        slot.release()
        raise
    body = _frames(
        sub,
        run,
        cursor,
        first,
        read,
        svc.settings.heartbeat_s,
        svc.settings.stream_retry_ms,
        lambda: auth.still_valid(caller),
    )
    return AguiStreamResponse(
        svc.streams.counted(slot, body),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _reader(svc: Svc, sid: str, user: str, turn: str) -> Callable[[int], Awaitable[Read]]:
    """Reads a page of the run's events after a seq: (the session's head seq, the events)."""

    async def read(after: int) -> Read:
        def page(c: sa.Connection) -> Read:
            p = reader.page_of_tasks(c, sid, user, [turn], after, PAGE, PAGE_BYTES)
            return p.head_seq, p.events

        return await svc.db.read(page)

    return read


async def _frames(
    sub: Subscription,
    run: RunMap,
    cursor: Cursor | None,
    first: list[Event],
    read: Callable[[int], Awaitable[Read]],
    heartbeat_s: float,
    retry_ms: int,
    auth_ended: Callable[[], Awaitable[str | None]],
) -> AsyncIterator[str]:
    """The run's frames from its start (those at or before `cursor` are not sent: the
    mapping is rebuilt from the start, so what follows the cursor is what was sent after
    it), then live ones, until the run ends. Heartbeats are SSE comments."""
    last = 0  # the newest seq of the run mapped

    def render(events: list[Event]) -> str:
        nonlocal last
        out: list[str] = []
        for e in events:
            if e.seq <= last or not run.owns(e.task_id):
                continue
            last = e.seq
            frames = run.frames(e)
            for i, f in enumerate(frames):
                if cursor is None or cursor.wants(e.seq, i):
                    out.append(f"id: {frame_id(e.seq, i, len(frames))}\ndata: {dumps(f)}\n\n")
            if run.ended:
                break
        return "".join(out)

    async def catch_up(page: list[Event]) -> AsyncIterator[str]:
        while True:
            if chunk := render(page):
                yield chunk
            if run.ended or not page_is_full(page, PAGE, PAGE_BYTES):
                return
            _, page = await read(last)

    try:
        yield f"retry: {retry_ms}\n: tether agui run\n\n"
        async for chunk in catch_up(first):
            yield chunk
        next_beat = time.monotonic() + heartbeat_s
        while not run.ended:
            if not sub.wake.is_set():
                try:
                    async with asyncio.timeout(max(0.0, next_beat - time.monotonic())):
                        await sub.wake.wait()
                except TimeoutError:
                    pass
            if sub.closing or sub.ended is not None:
                return  # the client joins again with Last-Event-ID
            events, overflow = sub.take()
            if overflow:
                async for chunk in catch_up((await read(last))[1]):
                    yield chunk
            elif chunk := render(events):
                yield chunk
            now = time.monotonic()
            if now >= next_beat and not run.ended:
                next_beat = now + heartbeat_s
                if await auth_ended() is not None:
                    return
                yield ": ping\n\n"
    finally:
        sub.close()
