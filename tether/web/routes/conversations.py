"""Conversations: a message starts (or queues behind) a model agent's turn; approvals a
turn waits for are answered here, once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, Field, model_validator
from starlette.responses import Response

from tether.attachment_refs import AttachmentRef
from tether.attachments import resolve
from tether.errors import Conflict
from tether.events.log import Append
from tether.llm import conversation
from tether.llm.installed import message_text, says_something
from tether.llm.new_turn import MISSING, model_agent, model_agents, start_turn, turns_agents
from tether.model import Task, dumps
from tether.web import render
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Reader, Svc
from tether.web.idempotency import IDEMPOTENCY_KEY, check_storage, idempotent
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.routes.sessions import clean_title, retitle, runtime_of
from tether.web.schemas import Approval, ApprovalList, ConversationOut, Selected, TaskOut
from tether.workspace import Workspace

router = APIRouter(prefix="/api", tags=["conversations"], route_class=StrictRoute)


class MessageIn(BaseModel):
    text: Annotated[str, AfterValidator(message_text)] = Field(
        "",
        max_length=100_000,
        description="What you say: may be empty (or left out) when the message carries files.",
    )
    agent: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="A model agent; default: the file's default.",
    )
    parent: str | None = Field(
        None,
        max_length=255,
        description="The message (turn id) this one answers after; null: a new first message; "
        "absent: the end of the branch shown.",
    )
    attachments: list[AttachmentRef] = Field(
        default_factory=list,
        max_length=100,
        description="Files attached (POST /api/sessions/{id}/attachments first): the model "
        "sees them with the message.",
    )

    @model_validator(mode="after")
    def _says_something(self) -> MessageIn:
        says_something(self.text, self.attachments)
        return self


class AnswerIn(BaseModel):
    decision: Literal["approve", "deny"]
    note: str | None = Field(None, max_length=2000, description="Told to the agent.")


class RegenerateIn(BaseModel):
    agent: str | None = Field(
        None, min_length=1, max_length=128, description="Another model agent to answer."
    )


@router.get(
    "/sessions/{session_id}/conversation",
    response_model=None,
    responses={200: {"model": ConversationOut}, **problems(401, 404, 429)},
)
async def get_conversation(
    session_id: str,
    caller: Reader,
    svc: Svc,
    brief: Annotated[
        bool, Query(description="Without each turn's message and reply (`text`, `reply`: null).")
    ] = False,
    events: Annotated[
        int,
        Query(
            ge=0,
            le=100,
            description="With the events of this many of the newest turns of the branch shown "
            "(each turn whole, its sub-agents' too, as many as fit a page): what a page "
            "opening a long conversation draws first.",
        ),
    ] = 0,
) -> Response:
    """The conversation's tree: every turn (all branches) with what it follows, its rank
    (the branch shown is the highest-ranked turn at each fork), status, message and final
    reply. A long conversation's page reads it brief, with its newest turns' events, and
    an older turn's events (`/events?task=`) as it shows it."""
    s = await svc.store.session(session_id, caller.user)
    db = svc.store.db
    turns = await conversation.read_turns(db, session_id, turns_agents(), texts=not brief)
    body = dumps({"session_id": session_id, "head_seq": s.head_seq, "turns": turns})
    if events:
        newest = conversation.shown(turns)[-events:]
        limit, size = svc.settings.page_limit, svc.settings.page_bytes
        found = await conversation.turn_events(db, session_id, newest, limit, size)
        # The events as the log keeps them (their data is JSON text already).
        body = body[:-1] + ',"events":[' + ",".join(e.to_json() for e in found) + "]}"
    return Response(body, media_type="application/json")


@router.post(
    "/sessions/{session_id}/messages",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": TaskOut, "description": "The turn was started (or queued)."},
        200: {"model": TaskOut, "description": "A turn with this Idempotency-Key exists."},
        **problems(400, 401, 404, 413, 422, 429, 507),
    },
)
async def post_message(
    session_id: str,
    body: MessageIn,
    caller: Caller,
    svc: Svc,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> Response:
    """Say something: the agent's turn is a task (it waits for the previous turn to end and
    sees the branch of the conversation it follows). Its reply streams into the session's
    log. `parent` answers after another message (editing a message: its parent); without
    it, the message follows the end of the branch shown."""
    session = await svc.store.session(session_id, caller.user)
    cfg = model_agent(model_agents(), body.agent)
    asked = body.model_dump(mode="json", exclude_unset=True)  # an absent parent is not null
    once = idempotent(caller.user, session_id, "messages", idempotency_key, asked)
    await check_storage(svc, caller.user, once)
    ws = Workspace(svc.store.db, session_id)
    files = await resolve(ws, body.attachments, svc.settings)
    task, new = await start_turn(
        runtime_of(svc),
        svc.db,
        svc.settings,
        session_id,
        cfg.name,
        body.text,
        parent=body.parent if "parent" in body.model_fields_set else MISSING,
        task_id=once.task_id,
        request_hash=once.request_hash,
        attachments=[f.model_dump() for f in files],
    )
    if new and not session.title:
        # An untitled session is named by its first message (as chat apps do), or its files.
        said = body.text or ", ".join(f.name for f in files)
        await retitle(svc, session_id, caller.user, title_of(said))
    return json_response(render.task(task), 201 if new else 200)


def title_of(text: str, limit: int = 60) -> str:
    """A session's title from a message: its first line of words, markdown marks left out."""
    line = next((ln for ln in text.splitlines() if ln.strip(" #>*-`")), text)
    words = " ".join(line.strip(" #>*-`").split())
    return clean_title(words if len(words) <= limit else words[: limit - 1].rstrip() + "…")


async def _own_turn(
    svc: Svc, caller: Caller, task_id: str
) -> tuple[Task, list[conversation.TurnRef]]:
    """The caller's turn, and its session's conversation (404 for another's; 422 for a task
    that is not a turn)."""
    task = await svc.store.task(task_id, caller.user)
    turns = await conversation.read_tree(svc.store.db, task.session_id, turns_agents())
    if all(t.id != task_id for t in turns):
        raise Conflict(
            "this task is not a message of a conversation: only a message can be "
            "answered again or shown"
        )
    return task, turns


@router.post(
    "/tasks/{task_id}/regenerate",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": TaskOut, "description": "A new reply to the same message was started."},
        200: {"model": TaskOut, "description": "A turn with this Idempotency-Key exists."},
        **problems(400, 401, 404, 409, 413, 422, 429, 507),
    },
)
async def regenerate(
    task_id: str,
    caller: Caller,
    svc: Svc,
    body: RegenerateIn | None = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> Response:
    """Answer a message again (regenerate a reply, or retry one that failed or was
    stopped): a new turn beside this one, with the same message, shown from now on."""
    turn, turns = await _own_turn(svc, caller, task_id)
    if not turn.status.terminal:
        raise Conflict("this reply is still being written: stop it first, then regenerate it")
    inst = model_agents()
    if body is not None and body.agent:
        cfg = model_agent(inst, body.agent)
    else:  # the agent that answered, or the default if it is gone
        cfg = model_agent(inst, turn.agent if turn.agent in inst.configs else None)
    inp = turn.input if isinstance(turn.input, dict) else {}
    follows = next(t.follows for t in turns if t.id == task_id)
    asked = {"task": task_id, **(body.model_dump(mode="json") if body is not None else {})}
    once = idempotent(caller.user, turn.session_id, "regenerate", idempotency_key, asked)
    await check_storage(svc, caller.user, once)
    new_task, new = await start_turn(
        runtime_of(svc),
        svc.db,
        svc.settings,
        turn.session_id,
        cfg.name,
        str(inp.get("text", "")),
        parent=follows,
        regenerates=inp.get("regenerates") or turn.id,
        task_id=once.task_id,
        request_hash=once.request_hash,
        attachments=inp.get("attachments") or [],  # the same message, with the same files
    )
    return json_response(render.task(new_task), 201 if new else 200)


@router.post(
    "/tasks/{task_id}/select",
    response_model=None,
    responses={200: {"model": Selected}, **problems(401, 404, 409, 429)},
)
async def select(task_id: str, caller: Caller, svc: Svc) -> Response:
    """Show this message's branch of the conversation, in every tab and on every device (a
    `conversation.selected` event)."""
    turn, turns = await _own_turn(svc, caller, task_id)
    (event,) = await svc.log.append(
        Append(
            turn.session_id,
            None,
            None,
            "conversation.selected",
            dumps({"turn": task_id}),
            selects=tuple(conversation.branch(turns, task_id)),
        )
    )
    return json_response({"turn": task_id, "seq": event.seq if event is not None else None})


@router.get(
    "/tasks/{task_id}/approvals",
    response_model=None,
    responses={200: {"model": ApprovalList}, **problems(401, 404, 429)},
)
async def list_approvals(task_id: str, caller: Caller, svc: Svc) -> Response:
    """What the task asked a person, and what was answered."""
    return json_response({"approvals": await svc.store.approvals_of(task_id, caller.user)})


@router.post(
    "/tasks/{task_id}/approvals/{approval_id}",
    response_model=None,
    responses={200: {"model": Approval}, **problems(400, 401, 404, 409, 413, 422, 429)},
)
async def answer_approval(
    task_id: str, approval_id: str, body: AnswerIn, caller: Caller, svc: Svc
) -> Response:
    """Approve or deny, once: a second answer (from any tab or device) is a 409."""
    from tether.llm import approvals

    row: dict[str, Any] = await approvals.answer(
        svc.store, task_id, approval_id, caller.user, body.decision, body.note
    )
    return json_response(row)
