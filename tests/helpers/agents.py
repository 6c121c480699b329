"""Agents for tests, loaded into a server with TETHER_AGENTS='["tests.helpers.agents"]'."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel

import benchmarks.agents  # noqa: F401 - registers "blast", which emits events as fast as it can
from tether import TaskContext, agent


class CountedInput(BaseModel):
    item: Any = None
    index: int = 0
    delay_s: float = 0.0


def _count(line: str) -> None:
    # One line per side effect, appended with O_APPEND so lines never interleave.
    path = os.environ["TETHER_TEST_COUNTER"]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@agent("counted_item", input=CountedInput)
async def counted_item(ctx: TaskContext, inp: CountedInput) -> dict[str, Any]:
    """Like `item`, and records every run of its step in the counter file."""

    async def work() -> dict[str, Any]:
        _count(f"run {inp.index}")
        ctx.emit("item.started", {"index": inp.index})
        await asyncio.sleep(inp.delay_s)
        ctx.emit("item.result", {"index": inp.index, "item": inp.item})
        _count(f"done {inp.index}")
        return {"index": inp.index, "item": inp.item}

    return await ctx.step(work, name="work")


class FailInput(BaseModel):
    message: str = "boom"


@agent("failing", input=FailInput)
async def failing(ctx: TaskContext, inp: FailInput) -> None:
    """Always fails."""
    ctx.emit("about.to.fail", {})
    raise RuntimeError(inp.message)
