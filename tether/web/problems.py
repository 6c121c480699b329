"""Every error leaves as application/problem+json (RFC 9457)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from tether.errors import TetherError

PROBLEM = "application/problem+json"


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


async def _tether_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TetherError)
    return problem(exc.status, exc.title, exc.detail, headers=exc.headers() or None, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "Bad request", "the request body is not valid JSON", errors=errors)
    return problem(422, "Invalid input", "the request does not validate", errors=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(
        exc.status_code, "HTTP error"
    )
    return problem(exc.status_code, title, str(exc.detail), headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(TetherError, _tether_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
