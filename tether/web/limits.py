"""A pure-ASGI body size limit: 413 before the app reads a byte too many. A file attached
to a message has its own limit (`max_attachment_bytes`), and a session's export brought back
its own (`max_import_bytes`: its files ride in it), each on that route only."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.web.asgi import TrackedSend
from tether.web.problems import problem

UPLOAD = re.compile(r"/api/sessions/[^/]+/attachments")
IMPORT = "/api/sessions/import"


class _TooLarge(HTTPException):
    # An HTTPException, so frameworks that wrap body-reading errors pass it through.
    def __init__(self, why: str) -> None:
        super().__init__(413, why)


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_bytes: int | None = None,
        import_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.import_bytes = import_bytes

    def _limit(self, scope: Scope) -> tuple[int, str]:
        """The most this request's body may hold, and what a 413 says."""
        upload, imported = self.upload_bytes, self.import_bytes
        if scope["method"] == "POST":
            if upload is not None and UPLOAD.fullmatch(scope["path"]):
                return upload, f"a file may be at most {upload:,} bytes (max_attachment_bytes)"
            if imported is not None and scope["path"] == IMPORT:
                return (
                    imported,
                    f"an export to import may be at most {imported:,} bytes (max_import_bytes)",
                )
        return self.max_bytes, f"the request body exceeds {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, why = self._limit(scope)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send, why)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(why)
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except _TooLarge:
            if not tracked.started:
                await self._reject(send, why)

    async def _reject(self, send: Send, why: str) -> None:
        response = problem(413, "Payload too large", why, headers={"connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
