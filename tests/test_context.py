"""What an agent may emit, and what it hears back when the log could not take it."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from tether.db.store import Store
from tether.errors import EventNotRecorded, InvalidJSON, NotDeterministic, TaskMoved
from tether.events.log import Append, EventLog
from tether.model import Task, TaskStatus
from tether.runtime.context import TaskContext, _decode


@pytest.fixture
async def ctx(log: EventLog) -> TaskContext:
    sid = (await Store(log.db).create_session("u", "")).id
    # The log takes events only of a task that exists.
    row = {"id": "t1", "session_id": sid, "parent_id": None, "agent": "a", "input": "{}"}
    row |= {"status": "running", "app_version": None, "created_at": 0.0}
    await log.append(Append(sid, "t1", None, "task.created", "{}", key="t1:c", new_task=row))
    task = Task(
        "t1",
        sid,
        None,
        "a",
        {},
        TaskStatus.running,
        None,
        None,
        None,
        None,
        None,
        0.0,
        None,
        None,
        0,
    )
    # The context needs only the runtime's log, its event size limit and its fence.
    runtime = SimpleNamespace(log=log, max_event_bytes=4096, suspect=lambda: False)
    return TaskContext(runtime, task)  # type: ignore[arg-type]


def deep(n: int) -> Any:
    v: Any = 0
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize(
    "data, error",
    [
        ({"x": math.nan}, InvalidJSON),
        ([math.inf], InvalidJSON),
        ({"s": "\ud800"}, InvalidJSON),
        (deep(65), InvalidJSON),
        ({1, 2}, InvalidJSON),
        ("x" * 5000, ValueError),
    ],
)
async def test_data_the_log_cannot_carry_is_refused_in_the_agent(
    ctx: TaskContext, data: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ctx.emit("x", data)
    ctx.emit("ok", deep(64))  # the limit itself is fine
    await ctx.flush()


async def test_reserved_types_unknown_fields_and_bad_progress_are_refused(ctx: TaskContext) -> None:
    with pytest.raises(ValueError, match="runtime"):
        ctx.emit("task.status", {"status": "completed"})
    with pytest.raises(TypeError):
        ctx.emit("x", {}, progress_n=1)  # type: ignore[call-arg]
    for n, m in ((10**30, 1), (-1, 2), (1.5, 2), (True, 2)):
        with pytest.raises(ValueError):
            ctx.progress(n, m)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ctx.emit("", 1)


async def test_flush_raises_what_failed_since_the_previous_flush(ctx: TaskContext) -> None:
    ctx.emit("a", 1)
    ctx._submit(Append(ctx.session_id, ctx.task_id, None, "bad", '"\ud800"'))
    ctx.emit("b", 2)
    with pytest.raises(EventNotRecorded, match="could not be recorded"):
        await ctx.flush()
    ctx.emit("c", 3)
    await ctx.flush()  # the failure was reported once
    log = ctx._runtime.log
    events = await log.read_after(ctx.session_id, 1, 10)
    assert [e.type for e in events] == ["a", "b", "c"]


async def test_a_step_whose_event_is_refused_is_recorded_as_failed_and_replays_so(
    ctx: TaskContext,
) -> None:
    runs = []

    async def work() -> str:
        runs.append(1)
        ctx.emit("a", 1)
        ctx._submit(Append(ctx.session_id, ctx.task_id, None, "bad", '"\ud800"'))
        return "out"

    with pytest.raises(EventNotRecorded):
        await ctx.step(work, name="work")
    recorded = await Store(ctx._runtime.log.db).steps_of(ctx.task_id)
    assert list(recorded) == [1] and recorded[1][0] == "work"
    # A replay does not run the step again, and fails where this run failed.
    replay = TaskContext(ctx._runtime, ctx.task)
    replay.recorded = dict(recorded)
    with pytest.raises(EventNotRecorded):
        await replay.step(work, name="work")
    assert runs == [1]
    # A replay that runs another step at that place is refused.
    other = TaskContext(ctx._runtime, ctx.task)
    other.recorded = dict(recorded)
    with pytest.raises(NotDeterministic, match="'other'.*'work'"):
        await other.step(work, name="other")


async def test_a_step_whose_events_fail_after_its_task_moved_leaves_the_record_alone(
    ctx: TaskContext,
) -> None:
    # The worker froze mid-step, past the stale time; its task moved to another worker. When
    # it wakes, the step's events fail (its connection died meanwhile): that failure is not
    # the task's, and the step's record must not be replaced by it (the new owner's replay
    # would fail). The step stops with TaskMoved instead.
    frozen = False
    fenced: list[str] = []

    async def fence(task_id: str) -> None:
        fenced.append(task_id)
        raise TaskMoved(f"task {task_id} moved")

    ctx._runtime.suspect = lambda: frozen  # type: ignore[attr-defined]
    ctx._runtime.fence = fence  # type: ignore[attr-defined]

    async def work() -> str:
        nonlocal frozen
        ctx._submit(Append(ctx.session_id, ctx.task_id, None, "bad", '"\ud800"'))
        frozen = True
        return "out"

    with pytest.raises(TaskMoved):
        await ctx.step(work, name="work")
    assert fenced == [ctx.task_id]
    recorded = await Store(ctx._runtime.log.db).steps_of(ctx.task_id)
    # Nothing, or the step's own output (the new owner's, or this run's): never its failure.
    assert [_decode(text)[0] for _, text in recorded.values()] in ([], [True]), recorded


async def test_a_step_output_that_cannot_be_recorded_is_the_agents_error(ctx: TaskContext) -> None:
    with pytest.raises(TypeError, match="cannot be recorded"):
        await ctx.step(lambda: (x for x in ()), name="gen")  # a generator does not pickle


async def test_a_step_with_a_long_name_replays_from_its_record(ctx: TaskContext) -> None:
    name = "x" * 300  # longer than the record keeps
    assert await ctx.step(lambda: "first", name=name) == "first"
    replay = TaskContext(ctx._runtime, ctx.task)
    replay.recorded = await Store(ctx._runtime.log.db).steps_of(ctx.task_id)
    assert await replay.step(lambda: "second", name=name) == "first"
