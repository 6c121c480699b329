"""The SDK's exceptions: one rooted tree, and every HTTP error carries the server's problem.

TetherClientError
├── ConnectionLost          the server could not be reached (retries spent)
├── NotTether               what answered is not Tether's API (a proxy's page, another service)
├── WaitTimeout             task.wait() ran out of time (also a TimeoutError)
└── APIError                a non-2xx answer; .problem is its problem+json
    ├── BadRequest          400
    ├── Unauthorized        401 (also: signed out, and the refresh was refused)
    ├── Forbidden           403
    ├── NotFound            404
    ├── Conflict            409
    ├── Gone                410 (.snapshot: what to rebuild from)
    ├── PayloadTooLarge     413
    ├── InvalidInput        422 (.errors: the failing fields)
    ├── TooManyRequests     429 (.retry_after, in seconds, if the server said)
    ├── QuotaExceeded       507
    └── ServerError         5xx (any other)
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tether.web.schemas import Problem

M = TypeVar("M", bound=BaseModel)


class TetherClientError(Exception):
    """The root of every error the SDK raises."""


class ConnectionLost(TetherClientError):
    """The server could not be reached, and the request could not be retried safely (or its
    retries ran out)."""


class NotTether(TetherClientError):
    """The server answered with something that is not Tether's API (an HTML page from a
    proxy or a captive portal, another service on that port)."""


def parse(model: type[M], body: bytes | str, what: str, **context: Any) -> M:
    """The model from a response's body; a body that is not one is `NotTether`."""
    try:
        return model.model_validate_json(body, context=context or None)
    except ValidationError as exc:
        start = body[:60] if isinstance(body, str) else body[:60].decode("utf-8", "replace")
        raise NotTether(f"{what}: the answer is not Tether's ({start!r}…)") from exc


class WaitTimeout(TetherClientError, TimeoutError):
    """A wait ended before the task did (the task keeps running on the server)."""


class APIError(TetherClientError):
    """The server answered with an error status; `problem` is its problem+json body."""

    def __init__(self, problem: Problem, headers: httpx.Headers | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.headers = headers if headers is not None else httpx.Headers()

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def detail(self) -> str:
        return self.problem.detail


class BadRequest(APIError):
    """400: a malformed request (a cursor that is not a number, a body that is not JSON)."""


class Unauthorized(APIError):
    """401: no, bad or expired credentials, or a sign-in that ended; `detail` says why."""


class Forbidden(APIError):
    """403."""


class NotFound(APIError):
    """404: no such session, task or approval, or not yours."""


class Conflict(APIError):
    """409: already done once (an approval answered), or no longer possible."""


class Gone(APIError):
    """410: the cursor is older than what the server keeps; `snapshot` is where to rebuild
    from (a stream does that by itself)."""

    @property
    def snapshot(self) -> dict[str, Any] | None:
        return self.problem.snapshot


class PayloadTooLarge(APIError):
    """413."""


class InvalidInput(APIError):
    """422: an unknown agent, or input that does not validate; `errors` lists the fields."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.problem.errors or []


class TooManyRequests(APIError):
    """429: too many failed sign-ins, or a per-user limit met."""

    @property
    def retry_after(self) -> float | None:
        raw = self.headers.get("retry-after")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


class QuotaExceeded(APIError):
    """507: your sessions hold your storage quota."""


class ServerError(APIError):
    """5xx: the server (or a proxy in front of it) failed."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: TooManyRequests,
    507: QuotaExceeded,
}


def problem_of(status: int, reason: str, body: bytes) -> Problem:
    """The response's problem+json; a body that is not one (a proxy's HTML page) is
    described as one."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "title" in data:
            data.setdefault("status", status)
            data.setdefault("detail", data["title"])
            return Problem.model_validate(data)
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()[:500]
    return Problem(title=reason or f"HTTP {status}", status=status, detail=text or reason)


def error_for(response: httpx.Response) -> APIError:
    """The typed exception for an error response (its body must have been read)."""
    problem = problem_of(response.status_code, response.reason_phrase, response.content)
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else APIError
    return cls(problem, response.headers)
