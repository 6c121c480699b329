"""Token usage in the database: the log's commit hook that writes a row per `model.usage`
event in the event's own transaction, and the sums read from those rows (per turn, session,
model and user) without reading the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tether.db.pg_writer import Stmt
from tether.db.schema import sessions, usage, usage_months
from tether.model import Event
from tether.usage import EVENT, TOKENS, month_of

_U, _M = usage.c, usage_months.c
_COLUMNS = (
    _U.session_id, _U.seq, _U.task_id, _U.turn_id, _U.agent, _U.model, _U.input_tokens,
    _U.output_tokens, _U.cache_read_tokens, _U.cache_write_tokens, _U.cost, _U.ts, _U.owner,
)  # fmt: skip


def usage_hook(pg: bool) -> Callable[[dict[str, list[Event]]], list[Stmt]]:
    """The log's commit hook (`EventLog.add_commit_hook`): a row per committed `model.usage`
    event, owner from its session row, and its cost added to the owner's month, in the
    commit that writes the event (an event dropped as a replay's is not committed again,
    so neither is its row)."""
    m = "%s" if pg else "?"
    owner = (
        f"(SELECT {sessions.c.owner.name} FROM {sessions.name} WHERE {sessions.c.id.name} = {m})"
    )
    marks = ", ".join([m] * (len(_COLUMNS) - 1))
    names = ", ".join(c.name for c in _COLUMNS)
    insert = f"INSERT INTO {usage.name} ({names}) VALUES ({marks}, {owner})"
    cost = _M.cost.name
    add_month = (
        f"INSERT INTO {usage_months.name} ({_M.owner.name}, {_M.month.name}, {cost})"
        f" VALUES ({owner}, {m}, {m}) ON CONFLICT ({_M.owner.name}, {_M.month.name})"
        f" DO UPDATE SET {cost} = {usage_months.name}.{cost} + excluded.{cost}"
    )

    def rows(committed: dict[str, list[Event]]) -> list[Stmt]:
        out: list[tuple[Any, ...]] = []
        months: dict[tuple[str, str], float] = {}  # (session, month) -> cost
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
                if d.get("cost") is not None:
                    key = (sid, month_of(e.ts))
                    months[key] = months.get(key, 0.0) + float(d["cost"])
        if not out:
            return []
        stmts = [Stmt(insert, out)]
        if months:
            stmts.append(Stmt(add_month, [(sid, mo, c) for (sid, mo), c in months.items()]))
        return stmts

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


def _totals(m: sa.RowMapping | None) -> dict[str, Any]:
    """A row of `_sums()` as the API gives it (None: nothing)."""
    if m is None:
        return {"calls": 0, **dict.fromkeys(TOKENS, 0), "cost": None, "unpriced_calls": 0}
    return {
        "calls": int(m["calls"]),
        **{t: int(m[t]) for t in TOKENS},
        "cost": None if m["cost"] is None else round(float(m["cost"]), 8),
        "unpriced_calls": int(m["unpriced"] or 0),
    }


def spent(c: sa.Connection, session_id: str | None, owner: str, month: str) -> tuple[float, float]:
    """(the session's spend, the owner's in `month`): the sums of known costs."""
    s = 0.0
    if session_id is not None:
        total = sa.func.coalesce(sa.func.sum(_U.cost), 0.0)
        s = float(c.execute(sa.select(total).where(_U.session_id == session_id)).scalar_one())
    u = c.execute(
        sa.select(_M.cost).where(_M.owner == owner, _M.month == month)
    ).scalar_one_or_none()
    return s, float(u or 0.0)


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
    """The owner's totals for calls made in [start, end), per session and per model: one
    pass over the window's rows, grouped by both, added up here."""
    where = sa.and_(_U.owner == owner, _U.ts >= start, _U.ts < end)
    groups = (
        c.execute(
            sa.select(_U.session_id, _U.model, *_sums())
            .where(where)
            .group_by(_U.session_id, _U.model)
        )
        .mappings()
        .all()
    )
    total: dict[str, Any] = _totals(None)
    by_session: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    for g in groups:
        one = _totals(g)
        for into in (
            total,
            by_session.setdefault(g["session_id"], _totals(None)),
            by_model.setdefault(g["model"], _totals(None)),
        ):
            _add(into, one)
    titles = (
        dict(
            c.execute(
                sa.select(sessions.c.id, sessions.c.title).where(
                    sessions.c.id.in_(list(by_session))
                )
            ).all()
        )
        if by_session
        else {}
    )
    return {
        "total": total,
        "sessions": [
            {"session_id": sid, "title": titles.get(sid), **t}
            for sid, t in sorted(by_session.items())
        ],
        "models": [{"model": name, **t} for name, t in sorted(by_model.items())],
    }


def _add(into: dict[str, Any], one: dict[str, Any]) -> None:
    for k in ("calls", *TOKENS, "unpriced_calls"):
        into[k] += one[k]
    if one["cost"] is not None:
        into["cost"] = round((into["cost"] or 0.0) + one["cost"], 8)


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
