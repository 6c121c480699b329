"""A stdio MCP server for tests (the official `mcp` SDK): `add` and `fail`, each call
recorded in the counter file the test server names (TETHER_TEST_COUNTER); and tools that
misbehave on purpose: `slow` (answers after a while), `stall` (never answers), `die` (the
server exits mid-call). With TETHER_TEST_MCP_STALL_LIST naming a file, listing the tools
stalls while that file exists. Each start is recorded as `mcp start PID`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from mcp.server import MCPServer


def _count(line: str) -> None:
    path = os.environ.get("TETHER_TEST_COUNTER")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class _Calc(MCPServer):
    async def list_tools(self) -> Any:
        flag = os.environ.get("TETHER_TEST_MCP_STALL_LIST")
        if flag and os.path.exists(flag):
            _count(f"mcp list stalled {os.getpid()}")
            await asyncio.sleep(3600)
        return await super().list_tools()


server = _Calc("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _count(f"mcp add {a} {b}")
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason."""
    raise ValueError(reason)


@server.tool()
async def slow(a: int, b: int, seconds: float = 2.0) -> int:
    """Add two integers, after a while."""
    _count(f"mcp slow started {os.getpid()}")
    await asyncio.sleep(seconds)
    return a + b


@server.tool()
async def stall() -> str:
    """Never answers."""
    _count(f"mcp stall {os.getpid()}")
    await asyncio.sleep(3600)
    return "never"


@server.tool()
def die() -> str:
    """The server exits mid-call."""
    _count(f"mcp die {os.getpid()}")
    os._exit(3)


if __name__ == "__main__":
    _count(f"mcp start {os.getpid()}")
    server.run()
