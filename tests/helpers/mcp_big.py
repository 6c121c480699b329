"""A stdio MCP server for tests (the official `mcp` SDK) whose `big` tool answers with as
many characters as asked: a result far past what a turn keeps."""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("big")


@server.tool()
def big(n: int) -> str:
    """A string of n characters."""
    return "x" * n


if __name__ == "__main__":
    server.run()
