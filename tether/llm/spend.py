"""Before a model call: whose turn it is part of, and whether the budgets allow it
(tether/usage.py says how a call is priced and when a budget refuses it)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from pydantic_ai.messages import ModelMessage

from tether import usage
from tether.db import usage as stored
from tether.db.engine import Database
from tether.db.schema import sessions, tasks
from tether.llm.config import ModelAgentConfig
from tether.llm.history import message_tokens, tokens
from tether.quotas import limits
from tether.runtime.context import TaskContext


async def before_call(
    ctx: TaskContext, db: Database, cfg: ModelAgentConfig, messages: list[ModelMessage]
) -> str:
    """The id of the turn (the top-level task) this call is part of. Raises ModelFailed,
    before anything is sent, when a budget does not cover the call's estimated input."""
    user_budget = limits().budget_user
    priced = cfg.price_in is not None
    estimate = 0.0
    if priced:
        n = message_tokens(messages) + tokens(cfg.system)
        estimate = n * (cfg.price_in or 0.0) / 1e6

    def read(c: sa.Connection) -> tuple[str, usage.Spent | None]:
        turn = _turn_of(c, ctx.task_id, ctx.task.parent_id)
        if not priced:  # its calls count toward no budget
            return turn, None
        owner, budget = c.execute(
            sa.select(sessions.c.owner, sessions.c.budget).where(sessions.c.id == ctx.session_id)
        ).one()
        if budget is None and user_budget is None:
            return turn, None
        s, u = stored.spent(c, ctx.session_id, owner, usage.month_of(time.time()))
        return turn, usage.Spent(budget, s, user_budget, u)

    turn, spent = await db.read(read)
    if spent is not None:
        usage.check(spent, estimate)
    return turn


def _turn_of(c: sa.Connection, task_id: str, parent: str | None) -> str:
    """The top-level task above this one (itself, for a turn)."""
    while parent is not None:
        task_id = parent
        parent = c.execute(
            sa.select(tasks.c.parent_id).where(tasks.c.id == parent)
        ).scalar_one_or_none()
    return task_id


def usage_data(
    cfg: ModelAgentConfig, turn: str, attempt: int, counts: dict[str, Any]
) -> dict[str, Any]:
    """A `model.usage` event's data: the attempt's token counts, priced."""
    tokens_ = {t: int(counts.get(t, 0)) for t in usage.TOKENS}
    return {
        "turn": turn,
        "agent": cfg.name,
        "model": cfg.model,
        "attempt": attempt,
        **tokens_,
        "cost": usage.cost(tokens_, cfg.price_in, cfg.price_out),
    }
