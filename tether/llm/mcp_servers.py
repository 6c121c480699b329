"""Connections to the agents' MCP servers: one per chat session and server, every request
bounded in time.

Why one per session, not one per process: a connection is shared by everything that uses it,
so when it breaks (a stdio server that stalls, crashes or is killed) it fails whatever else is
in flight on it ("Connection closed"), and a server that keeps state would mix the state of
different users. With one per session, a broken server touches only that session's turns.

A listing or a tool call that takes longer than the agent's `mcp_timeout_s`, or whose
connection breaks, raises `McpUnavailable`; the connection is dropped and its process stopped
(in the background: stopping a stuck process takes a few seconds), so the next request starts
a fresh one: the server is restarted. A connection unused for `idle_s` is closed (a timer
checks while any is open). pydantic-ai (and the MCP SDK under it) is imported on first use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tether.llm.config import McpCommand, seconds

log = logging.getLogger(__name__)

IDLE_S = 300.0
# Most connections (server processes) open at once in a process: past it, opening one closes
# the least recently used idle ones first (a heavy user's many sessions do not each keep a
# process alive for IDLE_S).
MAX_OPEN = 64
# Starting a server (a process, or an HTTP session) may take longer than one request should:
# it gets at least this long, so a short mcp_timeout_s does not fail a server that is booting.
START_S = 30.0


class McpUnavailable(Exception):
    """The server did not answer in time, or its connection broke; it will be restarted."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(slots=True)
class _Conn:
    """A toolset kept entered (so its connection stays open) from its first request on."""

    toolset: Any
    busy: int = 0
    used: float = field(default_factory=time.monotonic)
    entered: bool = False
    dropped: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        async with self.lock:
            if not self.entered:
                await self.toolset.__aenter__()
                self.entered = True


def where(ref: str | McpCommand) -> str:
    """The server as a person reads it (its URL, or the command that runs it)."""
    return ref if isinstance(ref, str) else ref.command


class McpConnections:
    def __init__(self, idle_s: float = IDLE_S, max_open: int = MAX_OPEN) -> None:
        self.idle_s, self.max_open = idle_s, max_open
        self._conns: dict[tuple[str, str], _Conn] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.TimerHandle | None = None

    async def list_tools(self, session_id: str, ref: str | McpCommand, timeout: float) -> Any:
        """The server's tools. A connection found broken is replaced and asked once more
        (listing has no side effects); a server that does not answer in time is not."""
        try:
            return await self._request(session_id, ref, timeout, lambda t: t.list_tools())
        except McpUnavailable as exc:
            if exc.timed_out:
                raise
            return await self._request(session_id, ref, timeout, lambda t: t.list_tools())

    async def call_tool(
        self, session_id: str, ref: str | McpCommand, tool: str, args: Any, timeout: float
    ) -> Any:
        """One call (never repeated here: a tool may have side effects)."""
        return await self._request(
            session_id, ref, timeout, lambda t: t.direct_call_tool(tool, args)
        )

    async def _request(
        self,
        session_id: str,
        ref: str | McpCommand,
        timeout: float,
        op: Callable[[Any], Awaitable[Any]],
    ) -> Any:
        key, conn = self._get(session_id, ref)
        conn.busy += 1
        starting = asyncio.timeout(max(timeout, START_S))
        limit = asyncio.timeout(timeout)
        try:
            async with starting:
                await conn.start()
            async with limit:
                return await op(conn.toolset)
        except Exception as exc:
            if starting.expired():
                self._drop(key, conn)
                raise McpUnavailable(
                    f"the MCP server {where(ref)} did not start within "
                    f"{seconds(max(timeout, START_S))}; it is tried again on the next call",
                    timed_out=True,
                ) from None
            if limit.expired():
                self._drop(key, conn)
                raise McpUnavailable(
                    f"the MCP server {where(ref)} did not answer within {seconds(timeout)} "
                    "(mcp_timeout_s); it is restarted for the next call",
                    timed_out=True,
                ) from None
            if _broken(exc):
                self._drop(key, conn)
                raise McpUnavailable(
                    f"the connection to the MCP server {where(ref)} broke ({_text(exc)}); "
                    "it is restarted for the next call",
                    timed_out=False,
                ) from None
            raise
        finally:
            conn.busy -= 1
            conn.used = time.monotonic()
            if self._reaper is None:
                self._reaper = asyncio.get_running_loop().call_later(self.idle_s, self._reap)

    def _reap(self) -> None:
        """Close the connections unused for idle_s; check again later while any is open."""
        self._reaper = None
        now = time.monotonic()
        for k, c in list(self._conns.items()):
            if not c.busy and now - c.used >= self.idle_s:
                self._drop(k, c)
        if self._conns:
            self._reaper = asyncio.get_running_loop().call_later(self.idle_s / 4, self._reap)

    def _get(self, session_id: str, ref: str | McpCommand) -> tuple[tuple[str, str], _Conn]:
        key = (session_id, ref if isinstance(ref, str) else ref.model_dump_json())
        conn = self._conns.get(key)
        if conn is None:
            idle = sorted((c.used, k) for k, c in self._conns.items() if not c.busy)
            for _used, k in idle[: max(0, len(self._conns) + 1 - self.max_open)]:
                self._drop(k, self._conns[k])
            conn = self._conns[key] = _Conn(_toolset(ref))
        return key, conn

    def _drop(self, key: tuple[str, str], conn: _Conn) -> None:
        if self._conns.get(key) is conn:
            del self._conns[key]
        if conn.dropped:  # two requests on it failed: it is being stopped already
            return
        conn.dropped = True
        task = asyncio.get_running_loop().create_task(_stop(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every connection (their processes stop)."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for k, c in list(self._conns.items()):
            self._drop(k, c)
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=15)


def _toolset(ref: str | McpCommand) -> Any:
    from pydantic_ai.mcp import MCPToolset

    client: Any = ref
    if isinstance(ref, McpCommand):
        from fastmcp.client.transports import StdioTransport

        client = StdioTransport(ref.command, ref.args, env=ref.resolved_env())
    # No timeouts of the library's own: each request is bounded by the agent's, above.
    return MCPToolset(client, id="mcp", init_timeout=None, read_timeout=None)


async def _stop(conn: _Conn) -> None:
    try:
        async with asyncio.timeout(30):
            if conn.entered:
                conn.entered = False
                await conn.toolset.__aexit__(None, None, None)
            # A stdio server's process outlives its session (kept alive): stop it too.
            await conn.toolset.client.transport.close()
    except Exception as exc:  # noqa: BLE001 - a server that will not stop is logged, not raised
        log.warning("an MCP server did not stop cleanly: %r", exc)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _broken(exc: BaseException) -> bool:
    """Whether the connection failed, as opposed to the tool (or the request) the server
    answered with an error: a tool's error leaves the connection as good as it was."""
    from fastmcp.exceptions import McpError, ToolError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
    from pydantic_ai.exceptions import ModelRetry, ToolFailed

    for e in _chain(exc):
        if isinstance(e, McpError):
            return e.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT)
        if isinstance(e, ToolError):
            return False
    return not isinstance(exc, ModelRetry | ToolFailed)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
