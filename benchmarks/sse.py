"""A lean SSE client over raw asyncio sockets (HTTP/1.1, chunked), for load generation.

httpx costs more CPU per event than the server spends producing it; measuring the server
needs a client that does less work than the server does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

_TS = re.compile(rb'"ts":([0-9.e+-]+)\}')


class StreamError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


class SSE:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, path: str, headers: dict[str, str]) -> SSE:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n{head}\r\n".encode()
        )
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        if status != 200:
            body = await reader.read(2000)
            writer.close()
            raise StreamError(status, body)
        assert chunked, "expected a chunked SSE response"
        return cls(reader, writer)

    async def chunks(self) -> AsyncIterator[bytes]:
        r = self.reader
        while True:
            size_line = await r.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return
            data = await r.readexactly(size + 2)
            yield data[:-2]

    async def frames(self) -> AsyncIterator[bytes]:
        """Complete SSE frames (bytes, without the blank line)."""
        buf = b""
        async for chunk in self.chunks():
            buf += chunk
            if b"\n\n" not in buf:
                continue
            *done, buf = buf.split(b"\n\n")
            for f in done:
                yield f

    def close(self) -> None:
        self.writer.transport.abort()


def frame_seq(frame: bytes) -> int | None:
    if frame.startswith(b"id: "):
        return int(frame[4 : frame.index(b"\n")])
    return None


def frame_ts(frame: bytes) -> float | None:
    m = _TS.search(frame)
    return float(m.group(1)) if m else None
