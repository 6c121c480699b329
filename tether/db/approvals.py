"""Approvals in the database: what a model agent's tool call asked a person, and the answer.

Reads and writes `tether_approvals`: a request is recorded once (a re-run of its step leaves
it as it is) and answered once. An approval reads as a plain dict, the same one the API
shows and the agent is told (`approval_from_row`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.schema import approvals, sessions, tasks
from tether.db.tasks import Tasks
from tether.errors import Conflict, NotFound
from tether.model import TERMINAL_VALUES


def approval_from_row(row: sa.RowMapping) -> dict[str, Any]:
    """A `tether_approvals` row (a mapping: `result.mappings()`) as the approval's dict."""
    args = row["args"]
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "session_id": row["session_id"],
        "tool": row["tool"],
        "args": None if args is None else json.loads(args),
        "status": row["status"],
        "decision": {"approved": "approve", "denied": "deny"}.get(row["status"]),
        "note": row["note"],
        "requested_at": row["requested_at"],
        "answered_at": row["answered_at"],
        "answered_by": row["answered_by"],
    }


def _approvals(result: sa.Result[Any]) -> list[dict[str, Any]]:
    return [approval_from_row(r) for r in result.mappings()]


class Approvals:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_approval(
        self, aid: str, task_id: str, session_id: str, tool: str, args: str
    ) -> None:
        """Record a request; one that exists (a re-run of the step) is left as it is."""

        def tx(conn: sa.Connection) -> None:
            found = conn.execute(sa.select(approvals.c.id).where(approvals.c.id == aid)).first()
            if found is None:
                conn.execute(
                    sa.insert(approvals).values(
                        id=aid,
                        task_id=task_id,
                        session_id=session_id,
                        tool=tool,
                        args=args,
                        status="pending",
                        requested_at=time.time(),
                    )
                )

        await self.db.write(tx)

    async def approvals_of(self, task_id: str, owner: str) -> list[dict[str, Any]]:
        """The task's approvals, oldest first (NotFound for a task that is not the owner's)."""
        await Tasks(self.db).task(task_id, owner)
        q = (
            sa.select(approvals)
            .where(approvals.c.task_id == task_id)
            .order_by(approvals.c.requested_at, approvals.c.id)
        )
        return await self.db.read(lambda c: _approvals(c.execute(q)))

    async def answer_approval(
        self, task_id: str, aid: str, user: str, decision: str, note: str | None
    ) -> dict[str, Any]:
        """Answer once: NotFound for an unknown approval (or task not yours), Conflict for
        one already answered or whose task has ended."""
        task = await Tasks(self.db).task(task_id, user)
        status = "approved" if decision == "approve" else "denied"

        def tx(conn: sa.Connection) -> dict[str, Any]:
            row = (
                conn.execute(
                    sa.select(approvals).where(
                        approvals.c.id == aid, approvals.c.task_id == task_id
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound("approval not found")
            if row["status"] != "pending":
                raise Conflict(
                    f"this approval was already answered ({row['status']})",
                    approval=approval_from_row(row),
                )
            if task.status.terminal:
                raise Conflict(
                    f"the task has already ended ({task.status.value}); nothing waits for an answer"
                )
            now = time.time()
            done = conn.execute(
                sa.update(approvals)
                .where(approvals.c.id == aid, approvals.c.status == "pending")
                .values(status=status, note=note, answered_at=now, answered_by=user)
            )
            if done.rowcount != 1:  # answered by a racing request in the meantime
                q = sa.select(approvals).where(approvals.c.id == aid)
                won = conn.execute(q).mappings().one()
                raise Conflict(
                    f"this approval was already answered ({won['status']})",
                    approval=approval_from_row(won),
                )
            return approval_from_row(row) | {
                "status": status,
                "decision": decision,
                "note": note,
                "answered_at": now,
                "answered_by": user,
            }

        return await self.db.write(tx)

    async def answered_approvals_of_unfinished_tasks(self) -> list[dict[str, Any]]:
        q = sa.select(approvals).where(
            approvals.c.status != "pending",
            approvals.c.task_id.in_(
                sa.select(tasks.c.id).where(tasks.c.status.not_in(TERMINAL_VALUES))
            ),
        )
        return await self.db.read(lambda c: _approvals(c.execute(q)))

    async def pending_approvals(self, owner: str) -> dict[str, int]:
        """Per session of the owner: how many approvals wait for an answer."""
        q = (
            sa.select(approvals.c.session_id, sa.func.count())
            .join(sessions, sessions.c.id == approvals.c.session_id)
            .join(tasks, tasks.c.id == approvals.c.task_id)
            .where(
                sessions.c.owner == owner,
                approvals.c.status == "pending",
                tasks.c.status.not_in(TERMINAL_VALUES),
            )
            .group_by(approvals.c.session_id)
        )
        return await self.db.read(lambda c: {r[0]: int(r[1]) for r in c.execute(q)})
