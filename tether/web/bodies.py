"""Request bodies are parsed strictly, at the door: JSON that every part of Tether can store
and every client can read back, or a 400 that says what is wrong.

Python's `json.loads` accepts NaN and Infinity (not JSON; a browser's JSON.parse throws on
them, so one such value would poison a stream for every reader), lone surrogates such as
"\\ud800" (valid JSON text, but not storable as UTF-8: the write fails), and nesting deep
enough to break serialisers downstream. All three are refused here, before anything is
written, so that no later step can fail on them after a task was started.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tether.model import MAX_JSON_DEPTH, json_depth

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_THREAD_ABOVE = 64 * 1024  # parse bodies larger than this off the event loop


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: numbers must be finite")


def _bad(message: str) -> json.JSONDecodeError:
    # FastAPI turns a JSONDecodeError into its `json_invalid` validation error (our 400).
    return json.JSONDecodeError(message, "", 0)


def parse_json_body(body: bytes) -> Any:
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
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
    return value


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
