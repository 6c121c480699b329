"""Security headers on every response (pure ASGI)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)
# The OpenAPI explorer loads its own scripts; it still may not be framed.
_DOCS_CSP = "frame-ancestors 'none'"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = _DOCS_CSP if scope["path"] in ("/docs", "/redoc") else _PAGE_CSP
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A response that sets one of these itself (a file download) keeps its own.
                headers = list(message.get("headers", []))
                have = {name.lower() for name, _ in headers}
                message["headers"] = headers + [h for h in extra if h[0] not in have]
            await send(message)

        await self.app(scope, receive, with_headers)
