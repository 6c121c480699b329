"""Approvals: a tool call that waits for a person's yes or no, for as long as it takes.

The task records the request (a row, and an `approval.requested` event) in a step, then waits
in DBOS `recv` on the approval's own topic: durable, so the wait survives restarts, and a
message sent while no process waited is there when one does. The answer is written once
(`UPDATE … WHERE status = 'pending'`: a second answer is a 409), then sent to the task's
workflow under an idempotency key; a start re-sends answers of unfinished tasks, so a crash
between the two writes loses nothing.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tether.db.store import Store
from tether.model import dumps
from tether.runtime import durable
from tether.runtime.context import TaskContext

if TYPE_CHECKING:
    from pydantic_ai.messages import ToolCallPart

WAIT_S = 3600  # one recv; the wait itself has no end but the task's


def approval_id(task_id: str, tool_call_id: str) -> str:
    return "ap_" + hashlib.sha256(f"{task_id}\0{tool_call_id}".encode()).hexdigest()[:24]


def _topic(aid: str) -> str:
    return f"approval:{aid}"


async def request(
    ctx: TaskContext,
    store: Store,
    part: ToolCallPart,
    args: BaseModel | dict[str, Any],
    preview: dict[str, Any] | None = None,
) -> str:
    """Record that the task asks (idempotent: a re-run finds the row and the event).
    `preview` is what the person should see besides the arguments (a file's diff)."""
    aid = approval_id(ctx.task_id, part.tool_call_id)
    values = args.model_dump(mode="json") if isinstance(args, BaseModel) else args
    await store.create_approval(aid, ctx.task_id, ctx.session_id, part.tool_name, dumps(values))
    ctx.emit(
        "approval.requested",
        {
            "approvalId": aid,
            "toolCallId": part.tool_call_id,
            "tool": part.tool_name,
            "args": values,
            **(preview or {}),
        },
    )
    return aid


async def wait(aid: str) -> dict[str, Any]:
    while True:
        answer = await durable.recv(_topic(aid), WAIT_S)
        if answer is not None:
            return dict(answer)


async def send(row: dict[str, Any]) -> None:
    await durable.send(
        row["task_id"],
        {"decision": row["decision"], "note": row["note"], "by": row["answered_by"]},
        topic=_topic(row["id"]),
        idempotency_key=f"answer:{row['id']}",
    )


async def answer(
    store: Store, task_id: str, aid: str, user: str, decision: str, note: str | None
) -> dict[str, Any]:
    row = await store.answer_approval(task_id, aid, user, decision, note)
    await send(row)
    return row


async def resend_answered(store: Store) -> None:
    for row in await store.answered_approvals_of_unfinished_tasks():
        await send(row)
