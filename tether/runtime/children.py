"""Sub-agents: a task's children, run in its process inside its workflow.

A sub-agent is a task of its own (its row, its status, its events, its steps) whose
coroutine runs in the process of its parent's workflow: a replay of the parent after a
crash starts again the children it had started and that had not ended, and each replays its
own recorded steps. So a delegation costs one commit of the log (a child's last step commits
with its end, see context.py) and no DBOS write. An agent that needs DBOS messaging (a model
agent's approvals) runs as a workflow of its own instead (`AgentSpec.own_workflow`).

A task ends after its sub-agents: one that returns waits for those still running (`join`),
and one that fails or is cancelled cancels them (`end`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from tether import quotas
from tether.db.store import Store
from tether.errors import DelegationFailed, NotDeterministic, NotFound, TaskCancelled, TaskError
from tether.events.log import Append, EventLog
from tether.model import Task, TaskStatus, dumps, dumps_within
from tether.runtime.agent import AgentRegistry
from tether.runtime.context import Child, TaskContext
from tether.runtime.types import Outcome

log = logging.getLogger(__name__)

MAX_DEPTH = 20  # sub-agents nest at most this deep (a runaway recursion ends here)


def new_task_row(
    task_id: str,
    session_id: str,
    parent_id: str | None,
    agent: str,
    input: Any,
    app_version: str,
) -> dict[str, Any]:
    """The row of a task about to be created (queued)."""
    return {
        "id": task_id,
        "session_id": session_id,
        "parent_id": parent_id,
        "agent": agent,
        "input": dumps(input),
        "status": TaskStatus.queued.value,
        "app_version": app_version,
        "created_at": time.time(),
    }


class Runner(Protocol):
    """What running sub-agents needs of the runtime (`engine.Runtime`)."""

    @property
    def store(self) -> Store: ...
    @property
    def log(self) -> EventLog: ...
    @property
    def registry(self) -> AgentRegistry: ...
    @property
    def app_version(self) -> str: ...
    @property
    def max_event_bytes(self) -> int: ...

    def suspect(self) -> bool: ...

    async def fence(self, task_id: str) -> None: ...

    async def run(self, task_id: str, fresh: Task | None = None) -> Outcome | None:
        """Run a task's agent here and record its outcome (None: it ended otherwise)."""
        ...

    async def start_workflow(self, task_id: str, *, top: bool = True) -> None: ...

    async def wait_terminal(self, task_id: str) -> Task: ...

    async def cancel_tree(self, task_id: str, reason: str) -> None: ...


class Children:
    """The sub-agents running in this process inside their parents."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        # Task id -> its coroutine, and parent id -> those of its children.
        self._inside: dict[str, asyncio.Task[Outcome | None]] = {}
        self._inside_of: dict[str, set[str]] = {}

    def runs_inside(self, task_id: str) -> bool:
        """Whether the task is a sub-agent running here inside its parent."""
        return task_id in self._inside

    def cancel_inside(self, task_id: str) -> Iterable[str]:
        """Cancel the task's coroutine if it runs here inside its parent; returns the ids of
        its own children running here (one may not be in the database yet)."""
        inside = self._inside.get(task_id)
        if inside is not None:
            inside.cancel()
        return self._inside_of.get(task_id, ())

    async def start(self, ctx: TaskContext, k: int, agent: str, input: Any) -> Child:
        """Start the task's k-th sub-agent, or on a replay find the one started then (and
        start it again if it had not ended)."""
        rt = self._runner
        if rt.suspect():
            await rt.fence(ctx.task_id)
        spec = rt.registry.get(agent)
        clean = spec.validate(input).model_dump(mode="json")
        child_id = f"{ctx.task_id}.{k}"
        if child_id.count(".") > MAX_DEPTH or len(child_id) > 255:
            raise TaskError(
                f"sub-agents nest at most {MAX_DEPTH} levels deep; this one would be deeper"
            )
        if ctx.fresh or not await rt.store.task_exists(child_id):
            # A new sub-agent stores its input, events and result: not past the owner's
            # storage quota (a batch admitted at the door would otherwise write on).
            full = await quotas.session_storage_full(rt.store.db, ctx.session_id, recent=True)
            if full is not None:
                raise TaskError(f"the sub-agent {agent!r} was not started: {full}")
        row = new_task_row(child_id, ctx.session_id, ctx.task_id, agent, clean, rt.app_version)
        data = dumps_within(
            {"agent": agent, "input": clean, "parent_id": ctx.task_id},
            rt.max_event_bytes,
            f"the input for sub-agent {agent!r}",
        )
        append = Append(
            ctx.session_id,
            child_id,
            ctx.task_id,
            "task.created",
            data,
            key=f"{child_id}:created",
            new_task=row,
            fresh=ctx.fresh,  # a body that never ran has started no child
        )
        if ctx.fresh and not spec.own_workflow:
            # The parent never ran before, so the child cannot exist: its creation is queued
            # and it starts at once; both commit with the child's first step. Should the
            # creation be refused (the parent was cancelled meanwhile), the log drops the
            # child's events too, and the parent hears of it at its next flush.
            ctx.enqueue(append)
            return self._run_here(ctx, Task.from_row(row), fresh=True)
        created = await rt.log.append(append)
        # Queued behind everything the parent emitted before: those are committed too.
        ctx.mark_flushed()
        if created[0] is not None:
            if spec.own_workflow:
                await rt.start_workflow(child_id, top=False)
                return self._child(child_id)
            return self._run_here(ctx, Task.from_row(row), fresh=True)
        # Dropped: either a replay (the child exists) or this task has ended.
        try:
            existing = await rt.store.task_row(child_id)
        except NotFound:
            raise TaskCancelled("the task has ended; it starts no sub-agents") from None
        if existing.agent != agent:
            raise NotDeterministic(
                f"task {ctx.task_id} is not deterministic: its sub-agent {k} is {agent!r} in "
                f"this run but was {existing.agent!r} when it was started"
            )
        if spec.own_workflow:
            await rt.start_workflow(child_id, top=False)
            return self._child(child_id)
        if existing.status.terminal:
            return self._child(child_id)
        running = self._inside.get(child_id)
        if running is not None:
            return self._child(child_id, running, ctx)
        return self._run_here(ctx, existing, fresh=False)

    def _child(
        self,
        task_id: str,
        run: asyncio.Task[Outcome | None] | None = None,
        parent: TaskContext | None = None,
    ) -> Child:
        return Child(task_id, functools.partial(self.result, task_id, run, parent))

    def _run_here(self, ctx: TaskContext, task: Task, *, fresh: bool) -> Child:
        """Run a sub-agent's coroutine here, inside its parent's workflow (in a context of
        its own: DBOS must not take its calls for the parent's)."""
        run = asyncio.create_task(
            self._run(task, fresh),
            name=f"tether-task-{task.id}",
            context=contextvars.Context(),
        )
        self._inside[task.id] = run
        self._inside_of.setdefault(ctx.task_id, set()).add(task.id)
        ctx.light.append((task.id, run))
        return self._child(task.id, run, ctx)

    async def _run(self, task: Task, fresh: bool) -> Outcome | None:
        """A sub-agent's run: its outcome (status, result, error) once committed, or None if
        it ended otherwise (cancelled by a request, or stopped with the server)."""
        try:
            return await self._runner.run(task.id, task if fresh else None)
        except asyncio.CancelledError:
            return None
        finally:
            self._inside.pop(task.id, None)
            siblings = self._inside_of.get(task.parent_id or "")
            if siblings is not None:
                siblings.discard(task.id)
                if not siblings:
                    self._inside_of.pop(task.parent_id or "", None)

    async def result(
        self,
        task_id: str,
        run: asyncio.Task[Outcome | None] | None = None,
        parent: TaskContext | None = None,
    ) -> Any:
        """A child's result once it has ended; DelegationFailed if it did not complete."""
        outcome = None
        if run is not None:
            # Shielded: a parent that stops waiting does not stop its child.
            outcome = await asyncio.shield(run)
            if parent is not None and parent.failed:
                await parent.flush()  # the child's creation was not recorded: raises why
        if outcome is None:
            task = await self._runner.wait_terminal(task_id)
            outcome = (task.status, task.result, task.error)
        status, result, error = outcome
        if status is TaskStatus.completed:
            return result
        raise DelegationFailed(task_id, error or {"status": status.value})

    async def join(self, ctx: TaskContext) -> None:
        """A task whose body returned ends after the sub-agents it started and did not wait
        for (their outcomes are their own)."""
        runs = [run for _, run in ctx.light if not run.done()]
        if runs:
            await asyncio.wait(runs)

    async def end(self, ctx: TaskContext, reason: str) -> None:
        """A task that failed or was cancelled first cancels the sub-agents it started that
        are still running here (and theirs)."""
        try:
            await ctx.flush()  # a child's creation may still be queued
        except Exception:  # noqa: BLE001 - what the parent could not record is not its outcome
            pass
        for child_id, run in ctx.light:
            if not run.done():
                try:
                    await self._runner.cancel_tree(child_id, reason)
                except Exception:
                    log.exception("task %s: cancelling sub-agent %s failed", ctx.task_id, child_id)
