"""Tether's Python SDK: `Client` (plain code) and `AsyncClient` (asyncio) over httpx, with
the browser client's rules — resume by seq with nothing lost or twice, tokens refreshed
under running work, task status when the stream is down. See docs/sdk.md.

It imports none of the server: only the response models it shares with it
(tether/web/schemas.py).
"""

from tether.client.aio import AsyncClient, AsyncSession, AsyncTask
from tether.client.auth import SharedRefresh
from tether.client.errors import (
    APIError,
    BadRequest,
    Conflict,
    ConnectionLost,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    NotTether,
    PayloadTooLarge,
    QuotaExceeded,
    ServerError,
    TetherClientError,
    TooManyRequests,
    Unauthorized,
    WaitTimeout,
)
from tether.client.stream import ConnectionState, EventStream, Heartbeat, Reset, Snapshot
from tether.client.sync import Client, Session, Stream, Task
from tether.web.schemas import (
    Approval,
    BudgetOut,
    EventOut,
    EventPage,
    SearchPage,
    SearchResult,
    SessionPage,
    SessionUsage,
    ShareMade,
    ShareOut,
    TaskTree,
    Totals,
    UsageOut,
)

__all__ = [
    "APIError",
    "Approval",
    "AsyncClient",
    "AsyncSession",
    "AsyncTask",
    "BadRequest",
    "BudgetOut",
    "Client",
    "Conflict",
    "ConnectionLost",
    "ConnectionState",
    "EventOut",
    "EventPage",
    "EventStream",
    "Forbidden",
    "Gone",
    "Heartbeat",
    "InvalidInput",
    "NotFound",
    "NotTether",
    "PayloadTooLarge",
    "QuotaExceeded",
    "Reset",
    "SearchPage",
    "SearchResult",
    "ServerError",
    "Session",
    "SessionPage",
    "SessionUsage",
    "ShareMade",
    "ShareOut",
    "SharedRefresh",
    "Snapshot",
    "Stream",
    "Task",
    "TaskTree",
    "TetherClientError",
    "TooManyRequests",
    "Totals",
    "Unauthorized",
    "UsageOut",
    "WaitTimeout",
]
