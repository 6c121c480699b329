"""Token usage in the database: the log's commit hook that writes a row per `model.usage`
event in the event's own transaction, and the sums read from those rows (per turn, session,
model and user) without reading the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tether.db.pg_writer import Stmt
from tether.db.schema import sessions, usage
from tether.model import Event
from tether.usage import EVENT, TOKENS

_U = usage.c
_COLUMNS = (
    _U.session_id, _U.seq, _U.task_id, _U.turn_id, _U.agent, _U.model, _U.input_tokens,
    _U.output_tokens, _U.cache_read_tokens, _U.cache_write_tokens, _U.cost, _U.ts, _U.owner,
)  # fmt: skip


def usage_hook(pg: bool) -> Callable[[dict[str, list[Event]]], list[Stmt]]:
    """The log's commit hook (`EventLog.add_commit_hook`): a row per committed `model.usage`
    event, owner from its session row, in the commit that writes the event (an event
    dropped as a replay's is not committed again, so neither is its row)."""
    m = "%s" if pg else "?"
    owner = (
        f"(SELECT {sessions.c.owner.name} FROM {sessions.name} WHERE {sessions.c.id.name} = {m})"
    )
    marks = ", ".join([m] * (len(_COLUMNS) - 1))
    names = ", ".join(c.name for c in _COLUMNS)
    text = f"INSERT INTO {usage.name} ({names}) VALUES ({marks}, {owner})"

    def rows(committed: dict[str, list[Event]]) -> list[Stmt]:
        out: list[tuple[Any, ...]] = []
        for sid, evs in committed.items():
            for e in evs:
                if e.type != EVENT or e.task_id is None:
                    continue
                d = json.loads(e.data)
                out.append(
                    (
                        sid, e.seq, e.task_id, str(d.get("turn") or e.task_id),
                        str(d.get("agent", "")), str(d.get("model", "")),
                        *(int(d.get(t, 0)) for t in TOKENS), d.get("cost"), e.ts, sid,
                    )
                )  # fmt: skip
        return [Stmt(text, out)] if out else []

    return rows


def _sums() -> list[sa.ColumnElement[Any]]:
    """Calls, each token count, and the cost: of the calls whose cost is known, and whether
    any had an unknown one (a total is then a lower bound, and says so)."""
    return [
        sa.func.count().label("calls"),
        *(sa.func.coalesce(sa.func.sum(_U[t]), 0).label(t) for t in TOKENS),
        sa.func.sum(_U.cost).label("cost"),
        sa.func.sum(sa.case((_U.cost.is_(None), 1), else_=0)).label("unpriced"),
    ]


def _totals(m: sa.RowMapping) -> dict[str, Any]:
    return {
        "calls": int(m["calls"]),
        **{t: int(m[t]) for t in TOKENS},
        "cost": None if m["cost"] is None else round(float(m["cost"]), 8),
        "unpriced_calls": int(m["unpriced"] or 0),
    }


def spent(
    c: sa.Connection, session_id: str | None, owner: str, since: float
) -> tuple[float, float]:
    """(the session's spend, the owner's since `since`): the sums of known costs."""
    total = sa.func.coalesce(sa.func.sum(_U.cost), 0.0)
    s = 0.0
    if session_id is not None:
        s = float(c.execute(sa.select(total).where(_U.session_id == session_id)).scalar_one())
    u = float(c.execute(sa.select(total).where(_U.owner == owner, _U.ts >= since)).scalar_one())
    return s, u


def session_usage(c: sa.Connection, session_id: str) -> dict[str, Any]:
    """The session's totals, per turn, and the seq of its last call counted (a page adds
    the `model.usage` events after it as they come)."""
    where = _U.session_id == session_id
    total = c.execute(sa.select(*_sums()).where(where)).mappings().one()
    turns = (
        c.execute(sa.select(_U.turn_id, *_sums()).where(where).group_by(_U.turn_id))
        .mappings()
        .all()
    )
    through = c.execute(sa.select(sa.func.max(_U.seq)).where(where)).scalar_one()
    return {
        "total": _totals(total),
        "turns": {r["turn_id"]: _totals(r) for r in turns},
        "through_seq": int(through or 0),
    }


def window_usage(c: sa.Connection, owner: str, start: float, end: float) -> dict[str, Any]:
    """The owner's totals for calls made in [start, end), per session and per model."""
    where = sa.and_(_U.owner == owner, _U.ts >= start, _U.ts < end)
    total = c.execute(sa.select(*_sums()).where(where)).mappings().one()
    by_session = (
        c.execute(
            sa.select(_U.session_id, sessions.c.title, *_sums())
            .select_from(usage.outerjoin(sessions, sessions.c.id == _U.session_id))
            .where(where)
            .group_by(_U.session_id, sessions.c.title)
            .order_by(_U.session_id)
        )
        .mappings()
        .all()
    )
    by_model = (
        c.execute(sa.select(_U.model, *_sums()).where(where).group_by(_U.model).order_by(_U.model))
        .mappings()
        .all()
    )
    return {
        "total": _totals(total),
        "sessions": [
            {"session_id": r["session_id"], "title": r["title"], **_totals(r)} for r in by_session
        ],
        "models": [{"model": r["model"], **_totals(r)} for r in by_model],
    }


def set_budget(c: sa.Connection, session_id: str, owner: str, budget: float | None) -> bool:
    """Set the owner's session's budget; False: no such session of theirs."""
    done = c.execute(
        sa.update(sessions)
        .where(sessions.c.id == session_id, sessions.c.owner == owner)
        .values(budget=budget)
    )
    return done.rowcount == 1


def budget_of(c: sa.Connection, session_id: str) -> float | None:
    value = c.execute(
        sa.select(sessions.c.budget).where(sessions.c.id == session_id)
    ).scalar_one_or_none()
    return None if value is None else float(value)
