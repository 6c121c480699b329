"""JSON responses written in one `json.dumps`, bypassing FastAPI's per-field encoding; the
event stream's response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tether.model import escape_line_breakers


def json_response(value: Any, status_code: int = 200) -> Response:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not text.isascii():
        text = escape_line_breakers(text)
    return Response(text, status_code=status_code, media_type="application/json")


RAW_SEND = "tether.send"  # the scope's key for the server's own `send` (web/app.py)


class EventStreamResponse(StreamingResponse):
    """`text/event-stream`, written straight to the server's `send`.

    Starlette's StreamingResponse runs each stream in an anyio task group with a second task
    that listens for the disconnect (on servers that speak ASGI below 2.4, as uvicorn does):
    with two thousand streams its cancel scopes cost a tenth of the loop's time. Here the
    disconnect is heard by a plain task that calls `on_disconnect` (the stream's body then
    ends at its next wake-up). Once the response has started (through the middleware, which
    adds its headers), its chunks go to the server's own `send`, past five layers of
    middleware that only watch for the start."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(content, status_code, headers=headers)
        self._chunks = content
        self._on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._on_disconnect is None:
            await super().__call__(scope, receive, send)
            return
        hangup = self._on_disconnect

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            hangup()

        listener = asyncio.ensure_future(listen())
        body = self._chunks
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            # The middleware has seen the start (and added its headers); the body goes to
            # the server's own send (web/app.py puts it in the scope).
            raw: Send = scope.get(RAW_SEND, send)
            async for chunk in body:
                await raw({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            await raw({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            listener.cancel()
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()  # its `finally`s run now, not when it is collected
