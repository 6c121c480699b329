"""Model calls' tokens and cost: yours over a window, a session's per turn, and a session's
budget."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tether.client.http import Http
from tether.client.loop import Loop
from tether.web.schemas import BudgetOut, SessionUsage, UsageOut

When = dt.datetime | dt.date | str | None


def _iso(t: When) -> str | None:
    return t.isoformat() if isinstance(t, dt.date) else t


class AsyncUsage:
    def __init__(self, http: Http) -> None:
        self._http = http

    async def get(self, start: When = None, end: When = None) -> UsageOut:
        """Your calls in [start, end) — in all, per session and per model — and your monthly
        budget with this month's spend. `start` defaults to the start of this month, `end`
        to now; a datetime or an ISO-8601 string, UTC unless it says."""
        params: dict[str, Any] = {}
        if (a := _iso(start)) is not None:
            params["from"] = a
        if (b := _iso(end)) is not None:
            params["to"] = b
        return await self._http.model(UsageOut, "GET", "/api/usage", params=params)

    async def session(self, session_id: str) -> SessionUsage:
        """The session's calls, in all and per turn, and its budget."""
        return await self._http.model(SessionUsage, "GET", f"/api/sessions/{session_id}/usage")

    async def set_budget(self, session_id: str, budget: float | None) -> BudgetOut:
        """What the session's model calls may cost (None: no limit). A turn whose next call
        the budget does not cover fails before the call, saying so."""
        return await self._http.model(
            BudgetOut, "PUT", f"/api/sessions/{session_id}/budget", json={"budget": budget}
        )


class Usage:
    """`AsyncUsage` for code without asyncio: each call runs on the client's loop."""

    def __init__(self, runner: Loop, aio: AsyncUsage) -> None:
        self._run = runner.run
        self._aio = aio

    def get(self, start: When = None, end: When = None) -> UsageOut:
        """Your calls' tokens and cost in [start, end); see `AsyncUsage.get`."""
        return self._run(self._aio.get(start, end))

    def session(self, session_id: str) -> SessionUsage:
        """The session's calls, in all and per turn, and its budget."""
        return self._run(self._aio.session(session_id))

    def set_budget(self, session_id: str, budget: float | None) -> BudgetOut:
        """What the session's model calls may cost (None: no limit)."""
        return self._run(self._aio.set_budget(session_id, budget))
