"""Agents for benchmarks, loaded with TETHER_AGENTS='["benchmarks.agents"]'."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tether import TaskContext, agent


class BlastInput(BaseModel):
    count: int = Field(10_000, ge=1, le=10_000_000)
    steps: int = Field(10, ge=1, le=10_000)
    pause_s: float = Field(0.0, ge=0, le=10, description="Sleep between steps (paced emitters).")


@agent("blast", input=BlastInput)
async def blast(ctx: TaskContext, inp: BlastInput) -> int:
    """Emit `count` small events as fast as possible, over `steps` checkpointed steps."""
    import asyncio

    per = inp.count // inp.steps

    async def burst(k: int) -> int:
        n = per if k < inp.steps - 1 else inp.count - per * (inp.steps - 1)
        for i in range(n):
            ctx.emit("tick", {"k": k, "i": i})
        return n

    total = 0
    for k in range(inp.steps):
        total += await ctx.step(burst, k, name="burst")
        if inp.pause_s:
            await asyncio.sleep(inp.pause_s)
    return total
