"""Usage and cost: the caller's model calls over a window, a session's per turn, and a
session's budget (tether/usage.py says how calls are priced and budgets refuse them)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from tether import usage
from tether.db import usage as stored
from tether.errors import NotFound
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Svc
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.schemas import BudgetOut, SessionUsage, UsageOut

router = APIRouter(prefix="/api", tags=["usage"], route_class=StrictRoute)


class BudgetIn(BaseModel):
    budget: float | None = Field(
        ..., gt=0, le=1e9, description="What the session's model calls may cost; null: no limit."
    )


# The times an answer can write back (a `from` of year 1 at +14:00 is in year 0 UTC).
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC).timestamp()
_LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.UTC).timestamp()


def _when(t: dt.datetime | None, default: float) -> float:
    """A time of the query (UTC unless it says) as a timestamp, within years 1 to 9999."""
    if t is None:
        return default
    ts = (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
    return min(max(ts, _EARLIEST), _LATEST)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@router.get(
    "/usage",
    response_model=None,
    responses={200: {"model": UsageOut}, **problems(400, 401, 429)},
)
async def get_usage(
    caller: Caller,
    svc: Svc,
    start: Annotated[
        dt.datetime | None,
        Query(
            alias="from",
            description="ISO-8601 (2026-12-01, 2026-12-01T09:30:00Z; UTC unless it says); "
            "default: the start of this month.",
        ),
    ] = None,
    end: Annotated[
        dt.datetime | None, Query(alias="to", description="ISO-8601; default: now.")
    ] = None,
) -> Response:
    """Your model calls' tokens and cost in [from, to): in all, per session and per model;
    and your monthly budget with this month's spend. A time that is not ISO-8601 is a 400;
    a `to` before `from` is an empty window."""
    now = time.time()
    month = usage.month_start(now)
    a = _when(start, month)
    b = max(a, _when(end, now + 1))  # `to` before `from`: an empty window
    user = caller.user

    def read(c: Any) -> dict[str, Any]:
        out = stored.window_usage(c, user, a, b)
        _, spent = stored.spent(c, None, user, usage.month_of(now))
        return {**out, "budget": {"limit": svc.settings.budget_user, "spent": round(spent, 8)}}

    found = await svc.db.read(read)
    return json_response({"from": _iso(a), "to": _iso(b), **found})


@router.get(
    "/sessions/{session_id}/usage",
    response_model=None,
    responses={200: {"model": SessionUsage}, **problems(401, 404, 429)},
)
async def get_session_usage(session_id: str, caller: Caller, svc: Svc) -> Response:
    """The session's model calls: in all and per turn, and its budget."""
    await svc.store.session(session_id, caller.user)

    def read(c: Any) -> dict[str, Any]:
        return {"budget": stored.budget_of(c, session_id), **stored.session_usage(c, session_id)}

    return json_response({"session_id": session_id, **await svc.db.read(read)})


@router.put(
    "/sessions/{session_id}/budget",
    response_model=None,
    responses={200: {"model": BudgetOut}, **problems(400, 401, 404, 413, 422, 429)},
)
async def put_budget(session_id: str, body: BudgetIn, caller: Caller, svc: Svc) -> Response:
    """Set what the session's model calls may cost (null: no limit). A turn whose next call
    it does not cover fails before the call, saying so."""
    if not await svc.db.write(lambda c: stored.set_budget(c, session_id, caller.user, body.budget)):
        raise NotFound("session not found")
    return json_response({"session_id": session_id, "budget": body.budget})
