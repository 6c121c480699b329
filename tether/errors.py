"""Tether's exceptions, rooted in one tree. The web layer maps each to problem+json.

TetherError
├── NotFound                 404: no such session or task (or not yours)
├── Conflict                 409: e.g. an approval that was already answered
├── BadRequest               400: e.g. a malformed cursor
├── InvalidInput             422: unknown agent, input that does not validate
│   └── InvalidJSON          a value JSON cannot carry (NaN, lone surrogate, too deep)
├── CursorGone               410: cursor older than what is retained, or beyond the head
├── PayloadTooLarge          413
├── UnsupportedType          415: e.g. an attachment of a type the settings refuse
├── Unauthorized             401: no, bad or expired credentials; says how to sign in
├── Forbidden                403: e.g. a cross-origin request to a cookie route
├── TooManyAttempts          429: too many failed sign-ins; carries Retry-After
├── QuotaExceeded            429: a per-user count limit (streams, sessions, queued turns)
├── StorageQuotaExceeded     507: the user's storage quota is used up
├── StorageUnavailable       503: the database refused a write (disk full, I/O error)
└── TaskError                raised inside agents
    ├── TaskCancelled        the task (or its parent) was cancelled
    ├── EventNotRecorded     an event the task emitted could not be committed
    ├── DelegationFailed     a delegated child task failed
    └── ModelFailed          a model provider refused a request for good (e.g. HTTP 401)
"""

from __future__ import annotations

from typing import Any


class TetherError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}


class NotFound(TetherError):
    status = 404
    title = "Not found"


class Conflict(TetherError):
    status = 409
    title = "Conflict"


class BadRequest(TetherError):
    status = 400
    title = "Bad request"


class InvalidInput(TetherError):
    status = 422
    title = "Invalid input"


class InvalidJSON(InvalidInput, ValueError):
    """Also a ValueError: what `json.dumps` raises for the same values."""

    title = "Invalid JSON"


class CursorGone(TetherError):
    status = 410
    title = "Cursor gone"


class PayloadTooLarge(TetherError):
    status = 413
    title = "Payload too large"


class UnsupportedType(TetherError):
    status = 415
    title = "Unsupported media type"


class Unauthorized(TetherError):
    status = 401
    title = "Unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="tether"'}


class Forbidden(TetherError):
    status = 403
    title = "Forbidden"


class TooManyAttempts(TetherError):
    status = 429
    title = "Too many attempts"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra.get("retry_after", 60))}


class QuotaExceeded(TetherError):
    """A per-user limit on how many of something exist at once (settings, "issue 26
    limits"): `limit` names the setting, Retry-After says when to look again."""

    status = 429
    title = "Quota exceeded"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra.get("retry_after", 5))}


class StorageQuotaExceeded(TetherError):
    """The user's sessions hold their storage quota: nothing new is started until some are
    deleted. 507 (Insufficient Storage), not 413: the request is not too large, the
    account is full, and no retry helps until something is deleted."""

    status = 507
    title = "Storage quota exceeded"


class StorageUnavailable(TetherError):
    status = 503
    title = "Storage unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class TaskError(TetherError):
    title = "Task error"


class TaskCancelled(TaskError):
    title = "Task cancelled"


class EventNotRecorded(TaskError):
    title = "Event not recorded"


class NotDeterministic(TaskError):
    """A replay after a crash did not repeat what the first run recorded (another step, or
    another sub-agent, at the same place): the agent's body is not deterministic."""

    title = "Agent not deterministic"


class TaskMoved(TaskError):
    """This worker was taken for dead (frozen, cut off) and the task now runs on another:
    this copy stops, recording nothing."""

    title = "Task moved"


class StepFailed(TaskError):
    """A step's recorded exception, raised again on replay, where the original exception
    could not be stored as it was."""

    title = "Step failed"


class DelegationFailed(TaskError):
    title = "Delegated task failed"

    def __init__(self, child_id: str, error: Any) -> None:
        # The words are for people (no task id); programs read `child_id` and `error`.
        why = error.get("message") or error.get("status") if isinstance(error, dict) else error
        super().__init__(f"a delegated task failed: {why or error}", child_id=child_id, error=error)
        self.child_id = child_id
        self.error = error


class ModelFailed(TaskError):
    title = "Model request failed"
