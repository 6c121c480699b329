"""The offline batch agent: process a list of items one by one, each by a sub-agent.

Deterministic and offline, so it can be run, killed and resumed in tests and demos.
Registered by the services (`register`), like every built-in agent.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from tether.errors import DelegationFailed
from tether.model import dumps
from tether.runtime.agent import AgentRegistry, AgentSpec, registry
from tether.runtime.context import Child, TaskContext


class ItemInput(BaseModel):
    item: Any = Field(description="The item to process (any JSON value).")
    index: int = Field(0, ge=0, description="Its position in the batch.")
    delay_s: float = Field(0.0, ge=0, le=3600, description="Simulated work time.")


def describe(item: Any) -> dict[str, Any]:
    text = item if isinstance(item, str) else dumps(item)
    return {
        "item": item,
        "length": len(text),
        "words": len(text.split()),
        "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
    }


async def item(ctx: TaskContext, inp: ItemInput) -> dict[str, Any]:
    """Process one item: emits progress, then its result."""

    async def process() -> dict[str, Any]:
        ctx.emit("item.started", {"index": inp.index, "item": inp.item})
        ctx.progress(0, 2)
        await asyncio.sleep(inp.delay_s / 2)
        ctx.progress(1, 2)
        await asyncio.sleep(inp.delay_s / 2)
        out = {"index": inp.index, **describe(inp.item)}
        ctx.progress(2, 2)
        ctx.emit("item.result", out)
        return out

    return await ctx.step(process, name="process")


class BatchInput(BaseModel):
    items: list[Any] = Field(min_length=1, max_length=10_000, description="Items to process.")
    delay_s: float = Field(0.5, ge=0, le=3600, description="Simulated work time per item.")
    parallel: int = Field(1, ge=1, le=64, description="Items processed at once (1: one by one).")
    # `x-agent`: the value names a registered agent (a client offers a choice of them).
    item_agent: str = Field(
        "item",
        description="The sub-agent each item is delegated to.",
        json_schema_extra={"x-agent": True},
    )
    on_error: Literal["continue", "fail"] = Field(
        "continue", description="Whether a failed item fails the batch."
    )

    @field_validator("item_agent")
    @classmethod
    def _known_agent(cls, name: str) -> str:
        # A typo is refused when the batch is started, not found at its first item. (The
        # services register every agent in this registry: the built-in ones, those of
        # `@agent` and the model agents.)
        if name not in registry:
            raise ValueError(f"there is no agent named {name!r}")
        return name


async def batch(ctx: TaskContext, inp: BatchInput) -> dict[str, Any]:
    """Process items one by one (or `parallel` at a time), each delegated to a sub-agent."""
    m = len(inp.items)
    ctx.progress(0, m)
    ctx.emit("batch.started", {"count": m, "parallel": inp.parallel})

    async def start(i: int) -> Child:
        return await ctx.start(
            inp.item_agent, {"item": inp.items[i], "index": i, "delay_s": inp.delay_s}
        )

    # Starts happen in index order and results are awaited in index order, so a replay
    # after a crash repeats the same sequence of starts.
    window = [await start(i) for i in range(min(inp.parallel, m))]
    results: list[Any] = []
    failed = 0
    for i in range(m):
        child = window[i]
        try:
            results.append(await child.result())
        except DelegationFailed as exc:
            if inp.on_error == "fail":
                raise
            failed += 1
            results.append({"index": i, "error": exc.error})
        ctx.progress(i + 1, m)
        if i + inp.parallel < m:
            window.append(await start(i + inp.parallel))

    digest = hashlib.sha256(dumps([r.get("sha256") for r in results]).encode()).hexdigest()[:16]
    summary = {
        "count": m,
        "succeeded": m - failed,
        "failed": failed,
        "digest": digest,
        "results": results,
    }
    ctx.emit("batch.summary", {k: v for k, v in summary.items() if k != "results"})
    return summary


def register(into: AgentRegistry) -> None:
    """Add the batch agent and its item agent."""
    into.add(AgentSpec.of("item", item, input=ItemInput, internal=True))
    into.add(AgentSpec.of("batch", batch, input=BatchInput))
