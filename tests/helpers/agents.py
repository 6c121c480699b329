"""Agents for tests, loaded into a server with TETHER_AGENTS='["tests.helpers.agents"]'."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

import benchmarks.agents  # noqa: F401 - registers "blast", which emits events as fast as it can
from tether import TaskContext, agent
from tether.agents import batch


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


def _stepped_item(
    name: str, line: Callable[[str, TaskContext, CountedInput], str], own_workflow: bool = False
) -> None:
    """An item agent whose one step records each run (and its end, or that its coroutine
    was cancelled: "stopped") in the counter file."""

    @agent(name, input=CountedInput, own_workflow=own_workflow)
    async def run(ctx: TaskContext, inp: CountedInput) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            _count(line("run", ctx, inp))
            ctx.emit("item.started", {"index": inp.index})
            try:
                await asyncio.sleep(inp.delay_s)
            except asyncio.CancelledError:
                _count(line("stopped", ctx, inp))
                raise
            ctx.emit("item.result", {"index": inp.index, "item": inp.item})
            _count(line("done", ctx, inp))
            return {"index": inp.index, "item": inp.item}

        return await ctx.step(work, name="work")


# Like `item`: "run 3" / "done 3" per run of its step.
_stepped_item("counted_item", lambda what, ctx, inp: f"{what} {inp.index}")
# The same, run as a DBOS workflow of its own when delegated.
_stepped_item(
    "counted_workflow_item", lambda what, ctx, inp: f"{what} {inp.index}", own_workflow=True
)
# The same, saying which task's step ran, when, and where: "run <task> <time> <executor>".
_stepped_item(
    "traced_item",
    lambda what, ctx, inp: (
        f"{what} {ctx.task_id} {time.time()!r} {os.environ.get('TETHER_EXECUTOR_ID', 'local')}"
    ),
)


class AwaitInput(BaseModel):
    task_id: str


@agent("await_task", input=AwaitInput)
async def await_task(ctx: TaskContext, inp: AwaitInput) -> dict[str, Any]:
    """Waits until another task has ended; returns how it ended."""
    other = await ctx.wait_for(inp.task_id)
    return {"status": other.status.value}


class FailInput(BaseModel):
    message: str = "boom"


@agent("failing", input=FailInput)
async def failing(ctx: TaskContext, inp: FailInput) -> None:
    """Always fails."""
    ctx.emit("about.to.fail", {})
    raise RuntimeError(inp.message)


class PickyInput(BaseModel):
    item: Any
    index: int = 0
    delay_s: float = 0.0


@agent("picky_item", input=PickyInput)
async def picky_item(ctx: TaskContext, inp: PickyInput) -> dict[str, Any]:
    """A batch item that fails when the item is "fail"."""
    if inp.item == "fail":
        raise RuntimeError(f"item {inp.index} refused")
    return {"index": inp.index, "item": inp.item}


class HoldInput(BaseModel):
    hold_s: float = 60.0


@agent("hold", input=HoldInput)
async def hold(ctx: TaskContext, inp: HoldInput) -> str:
    """Holds in a step; records in the counter file when its coroutine is cancelled."""

    async def work() -> str:
        _count(f"holding {ctx.task_id}")
        try:
            await asyncio.sleep(inp.hold_s)
        except asyncio.CancelledError:
            _count(f"cancelled {ctx.task_id}")
            raise
        return "held"

    return await ctx.step(work, name="hold")


class PoisonInput(BaseModel):
    mode: str
    delay_s: float = 0.0


@agent("poison", input=PoisonInput)
async def poison(ctx: TaskContext, inp: PoisonInput) -> Any:
    """A careless (or hostile) agent: emits what the log cannot carry, in one of many ways."""
    import math

    from tether.events.log import Append

    await asyncio.sleep(inp.delay_s)
    ctx.emit("poison.begin", {"mode": inp.mode})
    if inp.mode == "nan":
        ctx.emit("bad", {"x": math.nan})
    elif inp.mode == "infinity":
        ctx.emit("bad", [math.inf])
    elif inp.mode == "surrogate":
        ctx.emit("bad", {"text": "\ud800"})
    elif inp.mode == "kwargs":
        ctx.emit("bad", {}, no_such_column=1)  # type: ignore[call-arg]
    elif inp.mode == "deep":
        deep: Any = 1
        for _ in range(300):
            deep = [deep]
        ctx.emit("bad", deep)
    elif inp.mode == "huge":
        ctx.emit("bad", "x" * (ctx._runtime.max_event_bytes + 1))
    elif inp.mode == "not_json":
        ctx.emit("bad", {1, 2, 3})
    elif inp.mode == "reserved":
        ctx.emit("task.status", {"status": "completed"})
    elif inp.mode == "progress":
        ctx.progress(10**30, 1)
    elif inp.mode == "result_nan":
        return {"value": math.nan}
    elif inp.mode == "raw":
        # Straight into the log, past every check at emit: the writer must isolate it.
        ctx.enqueue(
            Append(ctx.session_id, ctx.task_id, ctx.task.parent_id, "bad", '"\ud800"', key=None)
        )
        await ctx.flush()
    elif inp.mode == "raw_int":
        ctx.enqueue(
            Append(
                ctx.session_id,
                ctx.task_id,
                ctx.task.parent_id,
                "bad",
                "1",
                task_values={"progress_n": 10**30},
            )
        )
        await ctx.flush()
    ctx.emit("poison.end", {"mode": inp.mode})
    return {"mode": inp.mode}


class TickInput(BaseModel):
    ticks: int = 150
    hold_s: float = 30.0


@agent("tick_then_hold", input=TickInput)
async def tick_then_hold(ctx: TaskContext, inp: TickInput) -> int:
    """One step that emits `ticks` events, then holds (the first time it runs) so that a test
    can kill the server while the step is in flight; a re-run does not hold."""

    async def work() -> int:
        first = not any(line == "ticked" for line in _lines())
        for i in range(inp.ticks):
            ctx.emit("tick", {"i": i})
        await ctx.flush()
        _count("ticked")
        if first:
            await asyncio.sleep(inp.hold_s)
        return inp.ticks

    n = await ctx.step(work, name="ticks")
    ctx.emit("ticks.done", {"n": n})
    return n


def _lines() -> list[str]:
    path = os.environ["TETHER_TEST_COUNTER"]
    return open(path).read().splitlines() if os.path.exists(path) else []


class ReplayInput(BaseModel):
    hold_s: float = 30.0


@agent("nondeterministic", input=ReplayInput)
async def nondeterministic(ctx: TaskContext, inp: ReplayInput) -> str:
    """Runs different steps after a restart than before it: the replay is refused."""
    first = not any(line == "nondeterministic ran" for line in _lines())
    _count("nondeterministic ran")

    async def quick() -> int:
        return 1

    async def hold() -> int:
        _count("holding")
        await asyncio.sleep(inp.hold_s)
        return 2

    await ctx.step(quick, name="first-run-step" if first else "other-step")
    await ctx.step(hold, name="hold")
    return "done"


class BigInput(BaseModel):
    count: int = 10
    size: int = 1000
    pause_s: float = 0.0


@agent("big_events", input=BigInput)
async def big_events(ctx: TaskContext, inp: BigInput) -> int:
    """Emits `count` events of about `size` bytes each, one step each."""
    for i in range(inp.count):

        async def one(i: int = i) -> None:
            ctx.emit("big", {"i": i, "pad": "x" * inp.size})

        await ctx.step(one, name="one")
        if inp.pause_s:
            await asyncio.sleep(inp.pause_s)
    return inp.count


class SpawnInput(BaseModel):
    hold_s: float = 1.0
    then: Literal["return", "fail"] = "return"


@agent("spawn_and_leave", input=SpawnInput)
async def spawn_and_leave(ctx: TaskContext, inp: SpawnInput) -> str:
    """Starts a `hold` sub-agent and does not wait for it; then returns, or fails."""
    child = await ctx.start("hold", {"hold_s": inp.hold_s})
    ctx.emit("spawned", {"child": child.task_id})
    if inp.then == "fail":
        raise RuntimeError("the parent fails while its sub-agent runs")
    return "returned"


@agent("step_error_then_hold", input=HoldInput)
async def step_error_then_hold(ctx: TaskContext, inp: HoldInput) -> dict[str, str]:
    """A step that raises, caught by the body; then a step that holds the first time it runs
    (so a test can kill the server there). A replay must take the same branch without
    running the failed step again."""

    async def flaky() -> None:
        _count(f"flaky ran {ctx.task_id}")
        raise LookupError("the first run's failure")

    try:
        await ctx.step(flaky, name="flaky")
        branch = "no error"
    except LookupError as exc:
        branch = f"caught {type(exc).__name__}: {exc}"
    ctx.emit("branch", {"branch": branch})

    async def hold() -> None:
        first = not any(line.startswith("holding ") for line in _lines())
        _count(f"holding {ctx.task_id}")
        if first:
            await asyncio.sleep(inp.hold_s)

    await ctx.step(hold, name="hold")
    return {"branch": branch}


class NestInput(BaseModel):
    depth: int = 2
    nap_s: float = 6.0


@agent("nest_nap", input=NestInput)
async def nest_nap(ctx: TaskContext, inp: NestInput) -> dict[str, Any]:
    """Delegates down `depth` levels; the deepest sub-agent takes a durable nap between two
    steps that record when they ran."""
    if inp.depth > 0:
        below = await ctx.delegate("nest_nap", {"depth": inp.depth - 1, "nap_s": inp.nap_s})
        return {"depth": inp.depth, "below": below}
    began = await ctx.step(lambda: _count(f"nap began {ctx.task_id}") or time.time(), name="began")
    _count(f"nap entered {time.time()!r}")  # on every run, replay included
    await ctx.sleep(inp.nap_s)
    woke = await ctx.step(lambda: _count(f"nap woke {ctx.task_id}") or time.time(), name="woke")
    return {"depth": 0, "began": began, "woke": woke}


def _gate_open() -> bool:
    return os.path.exists(os.path.join(os.path.dirname(os.environ["TETHER_TEST_COUNTER"]), "gate"))


async def _work(seconds: float) -> None:
    """Wait `seconds`, or until the test opens the gate."""
    end = time.monotonic() + seconds
    while not _gate_open() and (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.1))


@agent("gated_item", input=batch.ItemInput)
async def gated_item(ctx: TaskContext, inp: batch.ItemInput) -> dict[str, Any]:
    """The batch's `item` (the same step and events), whose work time ends at once when the
    test opens the gate (creates the file `gate` beside the counter file): a batch of them
    runs for as long as a test needs, then finishes in a moment."""

    async def process() -> dict[str, Any]:
        ctx.emit("item.started", {"index": inp.index, "item": inp.item})
        ctx.progress(0, 2)
        await _work(inp.delay_s / 2)
        ctx.progress(1, 2)
        await _work(inp.delay_s / 2)
        out = {"index": inp.index, **batch.describe(inp.item)}
        ctx.progress(2, 2)
        ctx.emit("item.result", out)
        return out

    return await ctx.step(process, name="process")


# The batch's `item`, startable on its own (the built-in one runs only as a sub-agent): a
# quick task that emits item.started / item.result.
agent("one_item", input=batch.ItemInput)(batch.item)
