"""A stdio MCP server for tests (the official `mcp` SDK): `add` and `fail`, each call
recorded in the counter file the test server names (TETHER_TEST_COUNTER)."""

from __future__ import annotations

import os

from mcp.server import MCPServer

server = MCPServer("calc")


def _count(line: str) -> None:
    path = os.environ.get("TETHER_TEST_COUNTER")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _count(f"mcp add {a} {b}")
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason."""
    raise ValueError(reason)


if __name__ == "__main__":
    server.run()
