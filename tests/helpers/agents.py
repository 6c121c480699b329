"""Agents for tests, loaded into a server with TETHER_AGENTS='["tests.helpers.agents"]'."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel, Field

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


class FirehoseInput(BaseModel):
    count: int = Field(1000, ge=1, le=1_000_000)
    steps: int = Field(1, ge=1, le=1000)


@agent("firehose", input=FirehoseInput)
async def firehose(ctx: TaskContext, inp: FirehoseInput) -> int:
    """Emits `count` small events as fast as it can, spread over `steps` steps."""
    per = inp.count // inp.steps

    async def burst(k: int) -> int:
        n = per if k < inp.steps - 1 else inp.count - per * (inp.steps - 1)
        for i in range(n):
            ctx.emit("tick", {"k": k, "i": i})
        return n

    total = 0
    for k in range(inp.steps):
        total += await ctx.step(burst, k, name="burst")
    return total
