"""Limits on the wire, below the ASGI app: uvicorn's httptools protocol, plus

- a bound on the request head (request line, headers and the blank line that ends them):
  httptools buffers a header line until it ends, so without one a client can make the
  server hold 64 MiB for one header. It is counted twice: the bytes of a head still coming
  (for a line that never ends), and, once the head is parsed, what it holds (for a head that
  came whole in one read: 70 KB and 100 headers of 1 KB each were let through by the first
  count alone);
- a deadline for the request head: a connection that opens and never finishes its head
  (slowloris, or a half-open socket) is closed, instead of being held forever;
- a deadline for the request body: the whole body must come within `body_timeout_s` of
  the head (a body trickled a byte at a time held its connection for as long as the client
  liked); past it, 408, or the connection is closed if the answer has begun;
- a bound on open connections: past it, a new connection gets a 503 problem and is closed.

Each answer is an `application/problem+json` body, as everywhere else.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def _problem_bytes(status: int, title: str, detail: str) -> bytes:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {_REASONS[status].decode()}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body.encode()


class GuardedHttpTools(HttpToolsProtocol):
    """Set `max_header_bytes`, `header_timeout_s`, `body_timeout_s` and `max_connections`
    on a subclass."""

    max_header_bytes = 65536
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_connections = 20000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_done = False
        self._head_bytes = 0
        self._head_parsed = 0  # url, header names and values seen of the current head
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._over_limit = False
        self._refused = False

    # uvicorn's protocols take the narrower asyncio.Transport where asyncio.Protocol names
    # BaseTransport (uvicorn silences the same error in its own definition).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Over the limit: answered (and closed) once the request arrives, so that the client
        # reads the answer instead of a reset.
        self._over_limit = len(self.connections) > self.max_connections
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._over_limit:
            self._refuse(
                503,
                "Service unavailable",
                "the server has too many open connections; try again shortly",
            )
            return
        super().data_received(data)
        # The head is still unfinished after this chunk: the chunk was (part of) the head.
        if not self._head_done and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(
                    431,
                    "Request header fields too large",
                    f"the request line and headers exceed {self.max_header_bytes} bytes",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_done = False
        self._head_bytes = 0
        self._head_parsed = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)  # in pieces when it spans reads
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._disarm_head_timer()
        if self._refused:
            return
        # "GET /path HTTP/1.1\r\n" ... "\r\n": the bytes of the head as clients write it
        # (whitespace around a header's value aside).
        version = self.parser.get_http_version()
        head = len(self.parser.get_method()) + len(version) + 9 + self._head_parsed + 2
        if head > self.max_header_bytes:
            self._refuse(
                431,
                "Request header fields too large",
                f"the request line and headers exceed {self.max_header_bytes} bytes",
            )
            return
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm_body_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm_body_timer()
        if not self._refused:
            super().on_message_complete()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_body_timer(self) -> None:
        self._disarm_body_timer()
        self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timeout)

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The server is not reading (the app has not taken what came, or a pipelined
            # request waits its turn): not the client's delay.
            self._arm_body_timer()
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self.transport.close()  # too late for an answer of its own
            return
        self._refuse(
            408,
            "Request timeout",
            f"the request body did not arrive within {self.body_timeout_s} s",
        )

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._head_done or self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(
                408,
                "Request timeout",
                f"the request head took longer than {self.header_timeout_s} s",
            )
        else:
            self.transport.close()

    def _refuse(self, status: int, title: str, detail: str) -> None:
        self._refused = True
        self._disarm_head_timer()
        self._disarm_body_timer()
        if not self.transport.is_closing():
            self.transport.write(_problem_bytes(status, title, detail))
            self.transport.close()


def guarded_protocol(
    max_header_bytes: int,
    header_timeout_s: float,
    max_connections: int,
    body_timeout_s: float = GuardedHttpTools.body_timeout_s,
) -> type:
    return type(
        "TetherHttpProtocol",
        (GuardedHttpTools,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_connections": max_connections,
        },
    )
