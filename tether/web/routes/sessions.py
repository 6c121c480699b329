"""Sessions, their task trees, starting tasks, and the agents there are."""

from __future__ import annotations

import asyncio
import math
from contextlib import nullcontext
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from tether import quotas
from tether.attachment_refs import AttachmentRef
from tether.attachments import resolve
from tether.db.tasks import read_brief_rows
from tether.errors import BadRequest, InvalidInput
from tether.events.log import Append, is_storage_failure
from tether.llm.new_turn import MISSING, start_turn
from tether.model import Session, dumps
from tether.runtime.engine import Runtime
from tether.web import render
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Reader, Svc
from tether.web.idempotency import IDEMPOTENCY_KEY, check_storage, idempotent
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.schemas import AgentList, SessionDetail, SessionOut, SessionPage, TaskOut, TaskTree
from tether.workspace import Workspace

router = APIRouter(prefix="/api", tags=["sessions"], route_class=StrictRoute)

PAGE_DEFAULT = 50
PAGE_MAX = 200
PAGE_CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,20})?:[A-Za-z0-9_]{1,64}$"  # created_at:id


class SessionIn(BaseModel):
    title: str = Field("", max_length=200)


class TaskIn(BaseModel):
    agent: str = Field(min_length=1, max_length=128, description="A registered agent's name.")
    input: Any = Field(default_factory=dict, description="The agent's input (see GET /api/agents).")


def runtime_of(svc: Svc) -> Runtime:
    """The runtime (a server's services always have one)."""
    assert svc.runtime is not None
    return svc.runtime


def _page_cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None:
        return None
    at, _, sid = raw.partition(":")
    try:
        when = float(at)
    except ValueError:
        when = math.nan
    if not math.isfinite(when) or not sid or len(sid) > 64:
        raise BadRequest(f"`before` must be the `next` of a previous page, got {raw!r}")
    return when, sid


@router.post(
    "/sessions",
    status_code=201,
    response_model=None,
    responses={201: {"model": SessionOut}, **problems(400, 401, 413, 422, 429)},
)
async def create_session(caller: Caller, svc: Svc, body: SessionIn | None = None) -> Response:
    """A new session. Without a title (or a blank one) it is untitled until its first
    message names it. 429 once you have `max_sessions_per_user`."""
    title = clean_title((body or SessionIn()).title)
    if not svc.settings.max_sessions_per_user:
        s = await svc.store.create_session(caller.user, title)
    else:
        # Counted and made one at a time per user, on every process: concurrent creates
        # cannot each see room for one more.
        async with svc.db.lock(f"sessions:{caller.user}"):
            await quotas.check_sessions(svc.db, svc.settings, caller.user)
            s = await svc.store.create_session(caller.user, title)
    return json_response(render.session(s), 201)


# Characters that change how the text around them reads, shown as nothing: bidi controls
# anywhere ("XSS ‮evil" would read "XSS live"), zero-width ones at the ends.
_BIDI = dict.fromkeys(
    map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
_INVISIBLE_ENDS = " \t\n\r\f\v\u00a0\u200b\u200c\u200d\u2060\ufeff\u3000"


def clean_title(title: str) -> str:
    return title.translate(_BIDI).strip(_INVISIBLE_ENDS)


async def retitle(svc: Svc, session_id: str, owner: str, title: str) -> dict[str, Any]:
    """Rename, and say so in the session's log (`session.renamed`): every tab and device
    that follows the session shows it."""
    s = await svc.store.rename_session(session_id, owner, title)
    await svc.log.append(Append(s.id, None, None, "session.renamed", dumps({"title": s.title})))
    return render.session(s)


@router.get(
    "/sessions",
    response_model=None,
    responses={200: {"model": SessionPage}, **problems(400, 401, 429)},
)
async def list_sessions(
    caller: Caller,
    svc: Svc,
    limit: Annotated[
        int, Query(ge=1, le=PAGE_MAX, description="Sessions per page.")
    ] = PAGE_DEFAULT,
    before: Annotated[
        str | None,
        Query(pattern=PAGE_CURSOR_PATTERN, description="The `next` of the previous page."),
    ] = None,
) -> Response:
    """Your sessions, newest first, a page at a time: follow `next` until it is null."""
    found = await svc.store.list_sessions(caller.user, limit + 1, _page_cursor(before))
    page = found[:limit]
    nxt = f"{page[-1].created_at!r}:{page[-1].id}" if len(found) > limit else None
    waiting = await svc.store.pending_approvals(caller.user)
    states = await svc.store.session_states([s.id for s in page])
    return json_response(
        {
            "sessions": [
                {**render.session(s), "needs_you": waiting.get(s.id, 0), **states[s.id]}
                for s in page
            ],
            "next": nxt,
        }
    )


@router.get(
    "/sessions/{session_id}",
    response_model=None,
    responses={200: {"model": SessionDetail}, **problems(401, 404, 429)},
)
async def get_session(session_id: str, caller: Reader, svc: Svc) -> Response:
    s, tasks = await svc.store.snapshot(session_id, caller.user)
    return json_response({**render.session(s), "tasks": render.tree(tasks)})


class SessionPatch(BaseModel):
    title: str = Field(min_length=1, max_length=200)


@router.patch(
    "/sessions/{session_id}",
    response_model=None,
    responses={200: {"model": SessionOut}, **problems(400, 401, 404, 413, 422, 429)},
)
async def rename_session(session_id: str, body: SessionPatch, caller: Caller, svc: Svc) -> Response:
    """Rename a session. The new title is also a `session.renamed` event in its log, so
    every tab and device that follows the session shows it."""
    title = clean_title(body.title)
    if not title:
        raise BadRequest("a session's title needs some visible text")
    return json_response(await retitle(svc, session_id, caller.user, title))


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_model=None,
    responses=problems(401, 404, 409, 429),
)
async def delete_session(session_id: str, caller: Caller, svc: Svc) -> Response:
    """Delete a session and everything in it, its workspace's files too. 409 while any of
    its tasks has not ended."""
    with svc.mirror.held(session_id) if svc.mirror is not None else nullcontext():
        try:
            await svc.store.delete_session(session_id, caller.user)
        except sa.exc.SQLAlchemyError as exc:
            # The disk is full: the delete, which frees room, is written in the reserve's
            # room and a part at a time, each part reusing the WAL the one before it used.
            if not (is_storage_failure(exc) and svc.db.sqlite):
                raise
            await asyncio.to_thread(quotas.free_reserve, svc.settings.data_dir)
            await svc.store.delete_session(session_id, caller.user, parts=500)
    return Response(status_code=204)


@router.post(
    "/sessions/{session_id}/tasks",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": TaskOut, "description": "The task was started."},
        200: {"model": TaskOut, "description": "A task with this Idempotency-Key exists."},
        **problems(400, 401, 404, 413, 422, 429, 507),
    },
)
async def create_task(
    session_id: str,
    body: TaskIn,
    caller: Caller,
    svc: Svc,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> Response:
    await svc.store.session(session_id, caller.user)
    once = idempotent(
        caller.user, session_id, "tasks", idempotency_key, body.model_dump(mode="json")
    )
    await check_storage(svc, caller.user, once)
    spec = svc.registry.get(body.agent)
    if spec.internal or spec.meta.get("internal"):
        raise InvalidInput(
            f"{spec.name} runs only as a sub-agent of another agent; start that one instead"
        )
    if spec.meta.get("kind") == "model":
        # A model agent's task is a turn of the conversation: it is placed, and ordered
        # behind the running turn, as a message is (its `after` is the server's, never the
        # caller's).
        inp = spec.validate(body.input).model_dump(mode="json")
        # Its files, as a message's are: this session's attachments, read again.
        try:
            refs = [AttachmentRef(path=a["path"]) for a in inp.get("attachments") or []]
        except ValidationError as exc:
            raise InvalidInput(f"an attachment must name a file of this session: {exc}") from None
        files = await resolve(Workspace(svc.store.db, session_id), refs, svc.settings)
        task, new = await start_turn(
            runtime_of(svc),
            svc.db,
            svc.settings,
            session_id,
            spec.name,
            inp["text"],
            parent=inp["parent"] if "parent" in (body.input or {}) else MISSING,
            task_id=once.task_id,
            request_hash=once.request_hash,
            attachments=[f.model_dump() for f in files],
        )
    else:
        task, new = await runtime_of(svc).create_task(
            session_id, body.agent, body.input, once.task_id, request_hash=once.request_hash
        )
    return json_response(render.task(task), 201 if new else 200)


@router.get(
    "/sessions/{session_id}/tasks",
    response_model=None,
    responses={200: {"model": TaskTree}, **problems(400, 401, 404, 429)},
)
async def list_tasks(
    session_id: str,
    caller: Reader,
    svc: Svc,
    brief: Annotated[
        bool,
        Query(
            description="Leave out results, and inputs larger than 2 KiB (null): a page that "
            "polls a session of ten thousand tasks needs their statuses, not their data."
        ),
    ] = False,
) -> Response:
    if brief:
        s, text = await svc.db.read(lambda c: _brief_tree(c, session_id, caller.user))
        return Response(
            f'{{"session_id":{dumps(s.id)},"head_seq":{s.head_seq},"tasks":{text}}}',
            media_type="application/json",
        )
    s, tasks = await svc.store.snapshot(session_id, caller.user)
    return json_response({"session_id": s.id, "head_seq": s.head_seq, "tasks": render.tree(tasks)})


def _brief_tree(c: sa.Connection, session_id: str, owner: str) -> tuple[Session, str]:
    s, rows = read_brief_rows(c, session_id, owner)
    return s, render.brief_tree(session_id, rows)


@router.get(
    "/agents",
    tags=["agents"],
    response_model=None,
    responses={200: {"model": AgentList}, **problems(401, 429)},
)
async def list_agents(_caller: Caller, svc: Svc) -> Response:
    return json_response({"agents": [a.to_dict() for a in svc.registry.all()]})
