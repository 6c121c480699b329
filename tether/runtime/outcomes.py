"""A task's outcome: its terminal `task.status` event, recorded until it lands.

The tasks table, written through the event log, is the truth users read: a status change is
a `task.status` event committed together with the row's update. A task never stays
`running` because its end could not be written: the end is retried until it is recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from tether.events.log import Append, EventLog
from tether.model import Task, TaskStatus, dumps, dumps_within
from tether.runtime.context import TaskContext
from tether.runtime.types import Outcome

log = logging.getLogger(__name__)

_MAX_MESSAGE = 4000


def safe_text(text: str, limit: int = _MAX_MESSAGE) -> str:
    """An agent's error message as storable text: lone surrogates escaped, length bounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more)"


def error_of(exc: BaseException) -> dict[str, str]:
    """An exception as a task's error."""
    return {"type": type(exc).__name__, "message": safe_text(str(exc))}


def status_append(
    task: Task, status: TaskStatus, data: dict[str, Any] | None = None, **values: Any
) -> Append:
    """The append that sets a task's status (`values`: more columns of its row)."""
    return Append(
        task.session_id,
        task.id,
        task.parent_id,
        "task.status",
        dumps({"status": status.value, **(data or {})}),
        key=f"{task.id}:status:{status.value}",
        status=status,
        task_values=values,
    )


async def record(
    events: EventLog,
    task: Task,
    status: TaskStatus,
    *,
    result: Any = None,
    error: Any = None,
    ctx: TaskContext | None = None,
    max_event_bytes: int,
    stopping: Callable[[], bool],
) -> Outcome | None:
    """Record a task's outcome. Retried until it is recorded (the disk may be full for a
    while), unless `stopping()`. Returns (status, result, error) as recorded, or None if
    the task had ended already. With the task's context, the outcome commits with its last
    step when that step's record is still on its way (and raises if the step could not be
    recorded). A result too large to store fails the task instead."""
    data: dict[str, Any] = {}
    values: dict[str, Any] = {"ended_at": time.time()}
    if status is TaskStatus.completed:
        try:
            text = dumps_within(result, max_event_bytes, "the result")
        except ValueError as exc:
            status = TaskStatus.failed
            error = {"type": "InvalidResult", "message": f"the result cannot be stored: {exc}"}
        else:
            data["result"] = result
            values["result"] = text
    if error is not None:
        data["error"] = error
        values["error"] = dumps(error)
    append = status_append(task, status, data, **values)
    # No key lookup for a first run's end: had the task ended already, its status
    # would drop this append.
    append.fresh = ctx is not None and ctx.fresh
    # As a reader of the row would see them (the JSON round trip).
    outcome = status, json.loads(values["result"]) if "result" in values else None, error
    if ctx is not None:
        landed = await ctx.end(append)
        if landed is not None:
            return None if landed[0] is None else outcome
    delay = 0.05
    while True:
        try:
            landed = await events.append(append)
            return None if landed[0] is None else outcome
        except Exception as exc:
            if stopping():
                raise
            log.warning(
                "could not record task %s %s (%s); retrying in %.2f s",
                task.id,
                status.value,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def of_workflow(workflow_status: str, workflow_error: Any) -> tuple[TaskStatus, Any]:
    """The status and error of a task whose workflow ended (as DBOS says) without recording
    the task's outcome."""
    if workflow_status == "SUCCESS":
        return TaskStatus.completed, None
    if workflow_status == "CANCELLED":
        return TaskStatus.cancelled, None
    reason = f"its workflow ended as {workflow_status} without recording an outcome"
    if workflow_error:
        reason += f": {workflow_error}"
    return TaskStatus.failed, {"type": "WorkflowError", "message": safe_text(reason)}
