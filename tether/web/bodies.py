"""Request bodies are parsed strictly, at the door: JSON that every part of Tether can store
and every client can read back, or a 400 that says what is wrong.

Python's `json.loads` accepts NaN and Infinity (not JSON; a browser's JSON.parse throws on
them, so one such value would poison a stream for every reader), lone surrogates such as
"\\ud800" (valid JSON text, but not storable as UTF-8: the write fails), and nesting deep
enough to break serialisers downstream. All three are refused here, before anything is
written, so that no later step can fail on them after a task was started. So is a NUL
(U+0000) in any string or key: SQLite stores one, Postgres cannot (`RefuseNul` below refuses
it in a path, a query or a header), and one request must get one answer on both.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.model import MAX_JSON_DEPTH, json_depth
from tether.validation import NUL_REFUSED, holds_nul
from tether.web.problems import problem

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_THREAD_ABOVE = 64 * 1024  # parse bodies larger than this off the event loop


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: not NaN or Infinity by name, but no finite number either
        raise ValueError(f"{text[:40]} is too large: numbers must be finite")
    return value


def _bad(message: str) -> json.JSONDecodeError:
    # FastAPI turns a JSONDecodeError into its `json_invalid` validation error (our 400).
    return json.JSONDecodeError(message, "", 0)


def parse_json_body(body: bytes) -> Any:
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, invalid UTF-8
        raise _bad(str(exc)) from None
    except RecursionError:
        raise _bad(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise _bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(
                "a string holds a lone surrogate (\\ud800-\\udfff without its pair); "
                "strings must be valid Unicode"
            ) from None
    if b"\\u0000" in body and holds_nul(value):
        raise _bad("a string " + NUL_REFUSED)
    return value


class RefuseNul:
    """Pure ASGI: a request with a NUL in its path, its query or a header is a 400 before
    any route reads it (an id with a NUL was a 500 on Postgres, a 404 on SQLite)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _nul_in(scope):
            await problem(400, "Bad request", "the request " + NUL_REFUSED)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope) -> bool:
    # Percent-decoding is one pass, so "%00" in the raw query is exactly a NUL once decoded.
    return (
        "\x00" in scope["path"]
        or b"%00" in scope.get("query_string", b"")
        or any(b"\x00" in value for _, value in scope["headers"])
    )


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > _THREAD_ABOVE:
                self._json = await asyncio.to_thread(parse_json_body, body)
            else:
                self._json = parse_json_body(body)
        return self._json


class StrictRoute(APIRoute):
    """An APIRoute whose JSON body goes through `parse_json_body`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
