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


def bad(ctx: TaskContext) -> Append:
    """An append the database refuses (a lone surrogate, past the checks of `emit`)."""
    return Append(ctx.session_id, ctx.task_id, None, "bad", '"\ud800"')


async def test_flush_raises_what_failed_and_nothing_after_it_commits_until_then(
    ctx: TaskContext,
) -> None:
    ctx.emit("a", 1)
    ctx.enqueue(bad(ctx))
    ctx.emit("b", 2)  # after what failed: refused, so the log never holds b without bad
    with pytest.raises(EventNotRecorded, match="could not be recorded"):
        await ctx.flush()
    ctx.emit("c", 3)
    await ctx.flush()  # the failure was reported once, and the task may go on
    log = ctx._runtime.log
    events = await log.read_after(ctx.session_id, 1, 10)
    assert [e.type for e in events] == ["a", "c"]


async def test_a_step_whose_event_is_refused_fails_its_task_and_replays_so(
    ctx: TaskContext,
) -> None:
    runs = []
    later: list[str] = []

    async def work() -> str:
        runs.append(1)
        ctx.emit("a", 1)
        ctx.enqueue(bad(ctx))
        return "out"

    # The step returns before its record is committed; the body goes on from its output.
    assert await ctx.step(work, name="work") == "out"
    ctx.emit("after", 2)
    # The task's next call hears that the step was not recorded, and the next step never runs.
    with pytest.raises(EventNotRecorded, match="step 1 .'work'. of task t1"):
        await ctx.step(lambda: later.append("ran"), name="next")
    assert later == []
    # The task cannot go on from an output that was not recorded: every later call raises,
    # even after the body caught the error, and nothing it emits commits.
    ctx.emit("caught", 3)
    for call in (ctx.flush, lambda: ctx.step(lambda: later.append("ran"), name="next")):
        with pytest.raises(EventNotRecorded, match="step 1"):
            await call()
    assert later == []
    log = ctx._runtime.log
    assert [e.type for e in await log.read_after(ctx.session_id, 1, 10)] == ["a"]
    recorded = await Store(log.db).steps_of(ctx.task_id)
    assert list(recorded) == [1] and recorded[1][0] == "work"
    assert _decode(recorded[1][1])[0] is False
    # A replay does not run the step again, and fails where the step's record says.
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
        ctx.enqueue(bad(ctx))
        frozen = True
        return "out"

    assert await ctx.step(work, name="work") == "out"  # before its record is committed
    with pytest.raises(TaskMoved):
        await ctx.flush()  # where the task hears of it
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
    await ctx.flush()  # the step's record is committed by the task's next call
    replay = TaskContext(ctx._runtime, ctx.task)
    replay.recorded = await Store(ctx._runtime.log.db).steps_of(ctx.task_id)
    assert await replay.step(lambda: "second", name=name) == "first"


def ended(ctx: TaskContext, data: str = '{"status": "completed"}') -> Append:
    """The task's end, as the runtime appends it."""
    return Append(
        ctx.session_id,
        ctx.task_id,
        None,
        "task.status",
        data,
        key=f"{ctx.task_id}:status:completed",
        status=TaskStatus.completed,
    )


async def test_a_tasks_last_step_and_its_end_commit_together(ctx: TaskContext) -> None:
    log = ctx._runtime.log
    store = Store(log.db)
    before = log.commits

    def work() -> str:
        ctx.emit("a", 1)
        return "out"

    assert await ctx.step(work, name="work") == "out"
    landed = await ctx.end(ended(ctx))
    assert landed is not None and landed[0] is not None
    assert log.commits == before + 1  # the step's event, its record and the end: one commit
    assert (await store.task_row(ctx.task_id)).status is TaskStatus.completed
    assert (await store.steps_of(ctx.task_id))[1][0] == "work"
    # With no step waiting to be confirmed, the end is the runtime's to commit as usual.
    assert await ctx.end(ended(ctx)) is None


async def test_a_task_whose_last_step_was_not_recorded_does_not_end_as_completed(
    ctx: TaskContext,
) -> None:
    def work() -> str:
        ctx.enqueue(bad(ctx))
        return "out"

    await ctx.step(work, name="work")
    with pytest.raises(EventNotRecorded, match="step 1"):
        await ctx.end(ended(ctx))
    store = Store(ctx._runtime.log.db)
    assert (await store.task_row(ctx.task_id)).status is TaskStatus.running
    assert _decode((await store.steps_of(ctx.task_id))[1][1])[0] is False


async def test_an_end_that_fails_on_its_own_is_left_to_the_runtimes_retries(
    ctx: TaskContext,
) -> None:
    # The step lands, the end itself is refused (as a full disk would refuse it): the task has
    # nothing to answer for, and the runtime commits the end again, as for any other task.
    assert await ctx.step(lambda: "out", name="work") == "out"
    assert await ctx.end(ended(ctx, '"\ud800"')) is None
    await ctx.flush()  # nothing of the task failed
    store = Store(ctx._runtime.log.db)
    assert _decode((await store.steps_of(ctx.task_id))[1][1]) == (True, "out")
    assert await ctx._runtime.log.append(ended(ctx)) != [None]
    assert (await store.task_row(ctx.task_id)).status is TaskStatus.completed
