"""The built-in tools a model agent may be given, each small and safe by construction:

- `fetch(url)`: GET a URL whose host is on the agent's `fetch_allow` list (no redirects
  followed, at most 256 KiB of text back);
- `read_file(path)`, `write_file(path, content)`, `list_files()`: files in the session's own
  workspace (`tether/workspace.py`: in the database, seen by every worker); a path that
  leaves it is refused.

A tool's failure is told to the model as the tool's result (it can try again); only the
loop's own errors fail the task. `delegate(agent, task)` is the loop's, not here.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from tether.llm.config import ModelAgentConfig
from tether.quotas import session_storage_full
from tether.workspace import PathRefused, Workspace, normalize

MAX_READ = 100 * 1024  # a turn keeps its messages in its result (max_event_bytes): keep tools small
MAX_WRITE = 1 << 20


class ToolRefused(Exception):
    """The tool cannot do this; the message is the model's to read."""


@dataclass(frozen=True, slots=True)
class ToolEnv:
    config: ModelAgentConfig
    workspace: Workspace


class FetchArgs(BaseModel):
    url: str = Field(description="An http(s) URL on the allow-list.")


class ReadArgs(BaseModel):
    path: str = Field(description="A path inside the session's workspace.")


class WriteArgs(BaseModel):
    path: str = Field(description="A path inside the session's workspace.")
    content: str = Field(description="The whole new content of the file.")


class NoArgs(BaseModel):
    pass


class DelegateArgs(BaseModel):
    agent: str = Field(description="Which agent to hand the task to.")
    task: str = Field(min_length=1, description="What it should do, in full: it sees nothing else.")


def check_path(path: str) -> str:
    """The workspace's name for `path`; a path that leaves it is refused (before a person
    is asked to approve it)."""
    try:
        return normalize(path)
    except PathRefused as exc:
        raise ToolRefused(str(exc)) from None


async def fetch(env: ToolEnv, args: FetchArgs) -> str:
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolRefused(f"only http(s) URLs can be fetched, not {args.url!r}")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    if parts.hostname not in env.config.fetch_allow and host not in env.config.fetch_allow:
        allowed = ", ".join(env.config.fetch_allow) or "none"
        raise ToolRefused(f"{host} is not on this agent's fetch allow-list ({allowed})")
    async with httpx.AsyncClient(timeout=20, follow_redirects=False) as client:
        try:
            async with client.stream("GET", args.url) as r:
                body = b""
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_READ:
                        break
        except httpx.HTTPError as exc:
            raise ToolRefused(f"fetching {args.url} failed: {exc!r}") from None
    text = body[:MAX_READ].decode("utf-8", "replace")
    return f"HTTP {r.status_code}\n\n{text}"


async def read_file(env: ToolEnv, args: ReadArgs) -> str:
    data = await env.workspace.read(check_path(args.path))
    if data is None:
        raise ToolRefused(f"there is no file {args.path!r} in the workspace")
    text = data[:MAX_READ].decode("utf-8", "replace")
    return text if len(data) <= MAX_READ else text + f"\n… ({len(data) - MAX_READ} bytes more)"


async def write_file(env: ToolEnv, args: WriteArgs) -> str:
    data = args.content.encode("utf-8", "backslashreplace")
    if len(data) > MAX_WRITE:
        raise ToolRefused(f"a file holds at most {MAX_WRITE} bytes")
    if (full := await session_storage_full(env.workspace.db, env.workspace.session_id)) is not None:
        raise ToolRefused(f"nothing was written: {full}")
    try:
        # Whole or not at all, in one transaction: a re-run after a crash writes it again.
        await env.workspace.write(check_path(args.path), data)
    except PathRefused as exc:
        raise ToolRefused(str(exc)) from None
    return f"wrote {len(data)} bytes to {args.path}"


MAX_DIFF = 64 * 1024


async def write_preview(env: ToolEnv, args: WriteArgs) -> dict[str, Any]:
    """What a person approving a write should see besides the new content: whether it
    replaces a file, and if so the change as a unified diff (cut at 64 KiB)."""
    try:
        old_bytes = await env.workspace.read(args.path)
    except PathRefused:
        return {}
    if old_bytes is None:
        return {"replaces": False}
    old = old_bytes[:MAX_WRITE].decode("utf-8", "replace")
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            args.content.splitlines(keepends=True),
            fromfile=f"{args.path} (now)",
            tofile=f"{args.path} (after)",
        )
    )
    if len(diff) > MAX_DIFF:
        diff = diff[:MAX_DIFF] + f"\n… ({len(diff) - MAX_DIFF} characters of the diff cut)\n"
    return {"replaces": True, "diff": diff or "(no change)"}


async def list_files(env: ToolEnv, _args: NoArgs) -> str:
    found = await env.workspace.list()
    return "\n".join(path for path, _size in found) or "(the workspace is empty)"


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    run: Callable[[ToolEnv, Any], Awaitable[str]]


BUILTIN: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("fetch", "Fetch a web page (GET) from an allowed host.", FetchArgs, fetch),
        Tool("read_file", "Read a text file from the session's workspace.", ReadArgs, read_file),
        Tool(
            "write_file",
            "Write a text file in the session's workspace (replaces it).",
            WriteArgs,
            write_file,
        ),
        Tool("list_files", "List the files in the session's workspace.", NoArgs, list_files),
    )
}
