"""Every error leaves as application/problem+json (RFC 9457), a crash included."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.errors import TetherError
from tether.events.log import is_storage_failure, storage_error
from tether.model import dumps
from tether.validation import plain_errors
from tether.web.asgi import TrackedSend

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Cursor gone",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Internal error",
    503: "Storage unavailable",
    507: "Storage quota exceeded",
}
_WHEN = {
    400: "Malformed request: a cursor or limit that is not a number, a body that is not "
    "JSON (NaN, lone surrogates and nesting deeper than 64 levels are refused), a NUL "
    "character (U+0000) anywhere in the path, query, headers or body.",
    401: "No, bad or expired credentials; `detail` says how to sign in.",
    403: "A cross-site request to a cookie route.",
    404: "No such session or task, or not yours.",
    409: "The thing was already done once (an approval already answered) or can no longer "
    "be (its task has ended).",
    410: "The cursor is older than what is retained, or beyond the head: rebuild from "
    "`snapshot` and resume from its `head_seq`.",
    413: "The request body is too large.",
    415: "A file of a type this server does not accept (an attachment: `attachment_types`).",
    422: "Unknown agent, or input that does not validate; `errors` lists the fields.",
    429: "Too many failed sign-ins from this address, or a per-user limit (open streams, "
    "sessions, unfinished turns of a session) is met: `detail` and `limit` say which; "
    "see Retry-After.",
    500: "The server failed; `detail` has a reference to its log.",
    503: "The database refused a write (disk full, I/O error); nothing was recorded.",
    507: "Your sessions hold your storage quota: delete some to start new work.",
}


def problem(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (plus 400, 500 and 503, which any route
    can answer: a NUL in a path is a 400 everywhere), each a problem+json body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 400, 500, 503}):
        out[status] = {
            "description": _WHEN[status],
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out


async def _tether_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TetherError)
    return problem(exc.status, exc.title, exc.detail, headers=exc.headers() or None, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    errors = plain_errors(raw)
    bad_json = [e for e in raw if e.get("type") == "json_invalid"]
    if bad_json:
        reason = (bad_json[0].get("ctx") or {}).get("error") or "malformed"
        return problem(400, "Bad request", f"the request body is not acceptable JSON: {reason}")
    if all(e["loc"][:1] != ["body"] for e in errors):
        # A malformed query, header or path parameter is a bad request; 422 is for a body
        # that is JSON but not what the route takes.
        detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in errors)
        return problem(400, "Bad request", detail, errors=errors)
    # A check of the whole body (not of one field) says in its own words what is wrong.
    whole = [e["msg"] for e in errors if e["loc"] == ["body"] and e["type"] == "value_error"]
    detail = "; ".join(whole) if whole else "the request does not validate"
    return problem(422, "Invalid input", detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title = _TITLES.get(exc.status_code, "HTTP error")
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path; a path
        # served by several routes (GET and POST /api/sessions) allows all of theirs.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed(request))}
    return problem(exc.status_code, title, str(exc.detail), headers=headers)


def _allowed(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def crash_response(method: str, path: str, exc: BaseException) -> Response:
    if isinstance(exc, sa.exc.SQLAlchemyError) and is_storage_failure(exc):
        err = storage_error(exc)
        log.error("%s %s: storage failure: %s", method, path, exc)
        return problem(err.status, err.title, err.detail, headers=err.headers())
    ref = secrets.token_hex(6)
    log.error("%s %s failed (reference %s)", method, path, ref, exc_info=exc)
    return problem(
        500,
        "Internal error",
        f"the server failed to handle this request (reference {ref}, in its log)",
    )


class CrashGuard:
    """Pure ASGI: an exception no handler took becomes a problem+json 500 (or a 503 when the
    database refused a write), logged once, with the connection kept, instead of Starlette's
    text/plain 500 and a re-raise that makes the server drop the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except ClientDisconnect:
            # The client hung up before its body was whole (a Content-Length it did not
            # keep): no one to answer, and no failure of the server's to log.
            log.info("%s %s: the client hung up during its body", scope["method"], scope["path"])
        except Exception as exc:
            if tracked.started:
                raise  # a stream that broke midway: nothing to answer with
            await crash_response(scope["method"], scope["path"], exc)(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(TetherError, _tether_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
