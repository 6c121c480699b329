"""Small pieces shared by the pure-ASGI middlewares."""

from __future__ import annotations

from starlette.types import Message, Send


class TrackedSend:
    """`send`, remembering whether the response has started: once it has, an error can no
    longer be answered with a response of its own."""

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
