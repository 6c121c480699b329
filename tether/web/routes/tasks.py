"""One task: its status snapshot, and cancel."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from tether.errors import NotFound
from tether.web import render
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Svc, TaskReader
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.schemas import TaskOut

router = APIRouter(prefix="/api/tasks", tags=["tasks"], route_class=StrictRoute)


@router.get(
    "/{task_id}",
    response_model=None,
    responses={200: {"model": TaskOut}, **problems(401, 404, 429)},
)
async def get_task(task_id: str, caller: TaskReader, svc: Svc) -> Response:
    """The task's server-side status: readable at any time, whatever the stream is doing."""
    task = await svc.store.task(task_id, caller.user)
    if caller.share is not None and task.session_id != caller.share.session_id:
        raise NotFound("task not found")  # a share link reads its own session's tasks only
    return json_response(render.task(task))


@router.post(
    "/{task_id}/cancel",
    response_model=None,
    responses={200: {"model": TaskOut}, **problems(401, 404, 429)},
)
async def cancel_task(task_id: str, caller: Caller, svc: Svc) -> Response:
    """Cancel the task and everything under it. Cancelling an ended task changes nothing."""
    assert svc.runtime is not None
    return json_response(render.task(await svc.runtime.cancel(task_id, caller.user)))
