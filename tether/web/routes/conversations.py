"""Conversations: a message starts (or queues behind) a model agent's turn; approvals a
turn waits for are answered here, once."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from tether.errors import InvalidInput
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Svc
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.routes.sessions import IDEMPOTENCY_KEY, idempotent_task_id
from tether.web.schemas import Approval, ApprovalList, TaskOut

router = APIRouter(prefix="/api", tags=["conversations"], route_class=StrictRoute)

NO_MODEL = (
    "no model agent is configured: point TETHER_AGENTS_FILE at a TOML file of agents "
    "(README, 'Model agents') and set the provider's API key in the server's environment"
)


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000, description="What you say.")
    agent: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="A model agent; default: the file's default.",
    )


class AnswerIn(BaseModel):
    decision: Literal["approve", "deny"]
    note: str | None = Field(None, max_length=2000, description="Told to the agent.")


def installed() -> Any:
    # The model layer is imported only when an agents file is configured.
    if "tether.llm.agent" not in sys.modules:
        return None
    return sys.modules["tether.llm.agent"].installed()


# One at a time per session: a message's turn waits for the turn before it, so finding that
# turn and starting this one must not interleave with another message's.
_turn_locks: dict[str, asyncio.Lock] = {}


@router.post(
    "/sessions/{session_id}/messages",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": TaskOut, "description": "The turn was started (or queued)."},
        200: {"model": TaskOut, "description": "A turn with this Idempotency-Key exists."},
        **problems(400, 401, 404, 413, 422, 429),
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
    sees the conversation so far). Its reply streams into the session's log."""
    await svc.store.session(session_id, caller.user)
    inst = installed()
    if inst is None or not inst.configs:
        raise InvalidInput(NO_MODEL)
    if body.agent is None:
        cfg = inst.default_agent()
    elif body.agent in inst.configs:
        cfg = inst.configs[body.agent]
    else:
        raise InvalidInput(
            f"unknown model agent {body.agent!r}; known: {', '.join(sorted(inst.configs))}"
        )
    assert cfg is not None and svc.runtime is not None
    if (why := cfg.problem()) is not None:
        raise InvalidInput(f"agent {cfg.name!r} is not ready: {why}")
    task_id = idempotent_task_id(caller.user, session_id, idempotency_key)
    lock = _turn_locks.setdefault(session_id, asyncio.Lock())
    try:
        async with lock:
            prev = await svc.store.latest_turn(session_id, list(inst.configs))
            after = prev.id if prev is not None and not prev.status.terminal else None
            task, new = await svc.runtime.create_task(
                session_id, cfg.name, {"text": body.text, "after": after}, task_id
            )
    finally:
        if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
            _turn_locks.pop(session_id, None)
    return json_response(task.to_dict(), 201 if new else 200)


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
