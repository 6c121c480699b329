"""The runtime: creating tasks, running them, recording their outcomes, cancel and recovery.

A top-level task is a DBOS workflow (durable.py holds every call to DBOS); its sub-agents
run inside it (children.py). DBOS resumes PENDING workflows of this executor at launch (and,
on a shared database, a live worker takes over a dead one's, see workers.py, which also
passes in the fence that keeps a frozen worker's copies of moved tasks from acting).

A task ends after its sub-agents: one that returns waits for those still running, and one
that fails cancels them. The tasks table, written through the event log, is the truth
users read: a status change is a `task.status` event committed together with the row update.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tether.db.ids import new_id
from tether.db.store import Store
from tether.errors import InvalidInput, NotFound, TaskCancelled, TaskMoved
from tether.events.log import Append, EventLog
from tether.model import Task, TaskStatus, dumps
from tether.runtime import durable, outcomes
from tether.runtime.agent import AgentRegistry
from tether.runtime.children import Children, new_task_row
from tether.runtime.context import Child, TaskContext
from tether.runtime.types import Fence, Outcome
from tether.runtime.waiting import Waiters

log = logging.getLogger(__name__)

_CANCELLED: tuple[type[BaseException], ...] = (TaskCancelled, *durable.CANCELLED_ERRORS)


# On a shared database, a task recorded this recently and not yet started is being started
# by the process that recorded it.
_STARTING_S = 30.0


class Runtime:
    """Runs tasks: top-level ones as DBOS workflows, sub-agents inside them. The one object
    that starts, settles, cancels and recovers tasks (the web layer and the workers call it).
    """

    def __init__(
        self,
        store: Store,
        log: EventLog,
        registry: AgentRegistry,
        app_version: str,
        *,
        child_poll_s: float = 1.0,
        max_event_bytes: int = 1 << 20,
        fence: Fence | None = None,
        task_queue: str | None = None,
        broadcast_cancel: Callable[[list[str]], Awaitable[None]] | None = None,
        tell_queued: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """
        :param app_version: the code version tasks are created under (a PENDING workflow of
            another version cannot resume here).
        :param child_poll_s: how often a task waiting on another rechecks it (notifications
            wake it sooner).
        :param max_event_bytes: the largest event, sub-agent input or result.
        :param fence: on a shared database, whether tasks running here are still this
            process's own (`workers.Fence`); None when embedded.
        :param task_queue: on a shared database, the DBOS queue top-level tasks start
            through (any worker dequeues them); None: they start in this process.
        :param broadcast_cancel: on a shared database, tells the other processes to stop
            these tasks' coroutines.
        :param tell_queued: on a shared database, wakes the workers once a task is queued
            (they poll the queue only as a backstop).
        """
        self.store = store
        self.log = log
        self.registry = registry
        self.app_version = app_version
        self.child_poll_s = child_poll_s
        self.max_event_bytes = max_event_bytes
        self._fence = fence
        self._task_queue = task_queue
        self._broadcast_cancel = broadcast_cancel
        self._tell_queued = tell_queued
        self._stopping = False
        self._running: dict[str, asyncio.Task[Any]] = {}
        self.children = Children(self)
        self.waiters = Waiters(store, child_poll_s, self._settle_if_dead)
        log.add_listener(self.waiters.on_commit)

    # -- creating and running --------------------------------------------------------------

    def _validated(self, agent: str, input: Any) -> Any:
        return self.registry.get(agent).validate(input).model_dump(mode="json")

    async def create_task(
        self,
        session_id: str,
        agent: str,
        input: Any,
        task_id: str | None = None,
        *,
        follows: str | None = None,
        shows: tuple[str, ...] | None = None,
        request_hash: str | None = None,
    ) -> tuple[Task, bool]:
        """Validate, record (task row + `task.created`), then start the workflow. With a
        given task_id (from an idempotency key) a task that exists is returned as it is:
        (task, False). A task whose workflow cannot be started is marked failed. A
        conversation turn (`shows` given: the turns before it on its branch) follows the
        turn `follows`, and its branch is the one shown from now. `request_hash` (with a
        task_id from an idempotency key) fingerprints the request: the key sent again with
        another request is InvalidInput, never the first request's task."""
        clean = self._validated(agent, input)
        task_id = task_id or new_id("t")
        row = new_task_row(task_id, session_id, None, agent, clean, self.app_version)
        row["follows"] = follows
        row["request_hash"] = request_hash
        created = await self.log.append(
            Append(
                session_id,
                task_id,
                None,
                "task.created",
                dumps({"agent": agent, "input": clean, "parent_id": None}),
                key=f"{task_id}:created",
                new_task=row,
                selects=() if shows is None else (*shows, task_id),
            )
        )
        if created[0] is None:
            try:
                existing = await self.store.task_row(task_id)
            except NotFound:
                raise NotFound("session not found") from None
            if existing.session_id != session_id:
                raise NotFound("session not found")
            if request_hash is not None:
                first = await self.store.request_hash(task_id)
                if first is not None and first != request_hash:
                    raise InvalidInput(
                        "this Idempotency-Key was already used for another request (a "
                        "different body); send a new key for a new request"
                    )
        try:
            await self.start_workflow(task_id)
        except Exception as exc:
            log.error("task %s could not be started: %r", task_id, exc)
            task = await self.store.task_row(task_id)
            error = {"type": "NotStarted", "message": outcomes.safe_text(str(exc))}
            try:
                await self.log.append(
                    outcomes.status_append(
                        task,
                        TaskStatus.failed,
                        {"error": error},
                        error=dumps(error),
                        ended_at=time.time(),
                    )
                )
            except Exception:
                log.exception("task %s: recording that it did not start failed too", task_id)
            raise
        return await self.store.task(task_id, None), created[0] is not None

    async def start_workflow(self, task_id: str, *, top: bool = True) -> None:
        """Start a task's workflow: a top-level one through the task queue, if there is one."""
        queue = self._task_queue if top else None
        await durable.start(task_id, queue)
        if queue is not None:
            await self.queued()

    async def queued(self) -> None:
        """Workflows were put on a queue: wake the workers (on a shared database)."""
        if self._tell_queued is not None:
            await self._tell_queued()

    def suspect(self) -> bool:
        """Whether this worker may have been taken for dead: steps and child starts then
        check with `fence` before they run (an in-memory test otherwise)."""
        return self._fence is not None and self._fence.suspect()

    async def fence(self, task_id: str) -> None:
        """Raise TaskMoved if this task was handed to another worker (this one was frozen
        or cut off past the stale time): its copy here must do nothing more."""
        if self._fence is not None:
            await self._fence.check(task_id)

    async def _moved_elsewhere(self, task_id: str) -> bool:
        return self._fence is not None and await self._fence.moved_elsewhere(task_id)

    async def stop_moved(self) -> None:
        """After a silence past the stale time: stop the coroutines of the tasks (with the
        sub-agents inside them) that were handed to another worker meanwhile."""
        for task_id in [t for t in self._running if not self.children.runs_inside(t)]:
            if await self._moved_elsewhere(task_id):
                self.stop_running([task_id])

    async def start_child(self, ctx: TaskContext, k: int, agent: str, input: Any) -> Child:
        """Start the task's k-th sub-agent (children.py)."""
        return await self.children.start(ctx, k, agent, input)

    async def execute(self, task_id: str) -> dict[str, Any]:
        """A task's workflow body (DBOS's): its outcome's status."""
        if self._task_queue is not None:
            # Its end frees a slot of this worker's: look for queued tasks once DBOS has
            # recorded it (after this coroutine, in the same asyncio task).
            current = asyncio.current_task()
            if current is not None:
                current.add_done_callback(lambda _: durable.wake_queues())
        outcome = await self.run(task_id)
        if outcome is None:  # it had ended otherwise meanwhile (a cancel): as the row says
            return {"status": (await self.store.task_row(task_id)).status.value}
        return {"status": outcome[0].value}

    async def run(self, task_id: str, fresh: Task | None = None) -> Outcome | None:
        """Run a task's agent and record its outcome; returns (status, result, error) as
        recorded, or None if the task had ended otherwise. `fresh` is the row of a sub-agent
        created just now (never run: nothing to read, nothing to replay)."""
        task = fresh if fresh is not None else await self.store.task_row(task_id)
        if task.status.terminal:
            return None
        if task.agent not in self.registry:
            error = {"type": "AgentMissing", "message": f"agent {task.agent!r} is not registered"}
            return await self._finish(task, TaskStatus.interrupted, error=error)
        spec = self.registry.get(task.agent)
        ctx = TaskContext(self, task)
        current = asyncio.current_task()
        assert current is not None
        self._running[task_id] = current
        try:
            running = outcomes.status_append(task, TaskStatus.running, started_at=time.time())
            if fresh is not None:
                running.fresh = True
                ctx.enqueue(running)  # commits with the child's first events
                ctx.fresh = True
            else:
                started = await self.log.append(running)
                if started[0] is None:  # a replay, or cancelled before it began: which?
                    task = await self.store.task_row(task_id)
                    if task.status.terminal:
                        return None
                    # Or begun by another worker, which took it over while this one was
                    # taken for dead (frozen, starved) before it began: that copy runs it
                    # as new (nothing to look up), so this one must add nothing to it.
                    if await self._moved_elsewhere(task_id):
                        return None
                    ctx.recorded = await self.store.steps_of(task_id)
                else:
                    ctx.fresh = True
            result = await spec.fn(ctx, spec.validate(task.input))
            if not ctx.has_unconfirmed_step:
                await ctx.flush()
            await self.children.join(ctx)
            return await self._finish(task, TaskStatus.completed, result=result, ctx=ctx)
        except _CANCELLED:
            await self.children.end(ctx, "its parent task was cancelled")
            return await self._finish(task, TaskStatus.cancelled)
        except durable.DurableError as exc:
            # DBOS refuses to go on (e.g. the body did not replay the steps it recorded):
            # the task has failed, and says why, before DBOS marks the workflow.
            log.warning("task %s failed in DBOS: %r", task_id, exc)
            if await self._moved_elsewhere(task_id):
                raise
            await self.children.end(ctx, "its parent task failed")
            await self._finish(
                task,
                TaskStatus.failed,
                error={"type": "WorkflowError", "message": outcomes.safe_text(str(exc))},
            )
            raise
        except TaskMoved as exc:
            # This copy was fenced off: another run of the task owns it now (on another
            # worker, or on this one after the task came back to it). Never its outcome.
            log.warning("%s", exc)
            return None
        except Exception as exc:  # noqa: BLE001 - an agent's failure is the task's failure
            log.info("task %s failed: %r", task_id, exc)
            if await self._moved_elsewhere(task_id):
                return None
            await self.children.end(ctx, "its parent task failed")
            return await self._finish(task, TaskStatus.failed, error=outcomes.error_of(exc))
        finally:
            if self._running.get(task_id) is current:  # not a later run's of the same task
                del self._running[task_id]

    async def _finish(
        self,
        task: Task,
        status: TaskStatus,
        *,
        result: Any = None,
        error: Any = None,
        ctx: TaskContext | None = None,
    ) -> Outcome | None:
        """Record a task's outcome. Retried until it is recorded (the disk may be full for a
        while): a task never stays `running` because its end could not be written. Returns
        (status, result, error) as recorded, or None if the task had ended already. With
        the task's context, the outcome commits with its last step when that step's record
        is still on its way (and raises if the step could not be recorded)."""
        return await outcomes.record(
            self.log,
            task,
            status,
            result=result,
            error=error,
            ctx=ctx,
            max_event_bytes=self.max_event_bytes,
            stopping=lambda: self._stopping,
        )

    async def wait_terminal(self, task_id: str) -> Task:
        """Wait until a task has ended (any way); returns it."""
        return await self.waiters.wait_terminal(task_id)

    # -- cancelling ------------------------------------------------------------------------

    async def cancel(self, task_id: str, owner: str) -> Task:
        """Cancel a task and every descendant: the coroutines running here first (so none
        runs another line once the statuses say cancelled), then the statuses (the truth
        users read), then DBOS (so nothing resumes them). Repeated until nothing under the
        task is unfinished: a child created while this runs is caught by the next round,
        and once the task is terminal the log refuses it any new child."""
        await self.store.task(task_id, owner)
        await self.cancel_tree(task_id, "cancelled by request")
        return await self.store.task(task_id, owner)

    async def cancel_tree(self, task_id: str, reason: str) -> None:
        """Cancel a task and its descendants (see `cancel`)."""
        while tree := [t for t in await self.store.subtree(task_id) if not t.status.terminal]:
            self.stop_running([t.id for t in tree])
            now = time.time()
            await self.log.append(
                *(
                    outcomes.status_append(
                        t, TaskStatus.cancelled, {"reason": reason}, ended_at=now
                    )
                    for t in tree
                )
            )
            ids = [t.id for t in tree]
            if self._broadcast_cancel is not None:
                await self._broadcast_cancel(ids)  # coroutines of these tasks on other processes
            try:
                await durable.cancel(ids)
            except durable.DurableError as exc:
                log.warning("DBOS cancel of %s: %r", ids, exc)

    def stop_running(self, task_ids: list[str]) -> None:
        """Cancel the coroutines of these tasks that run in this process, and of the
        sub-agents running here inside them (one may not be in the database yet)."""
        todo = list(task_ids)
        while todo:
            tid = todo.pop()
            running = self._running.get(tid)
            if running is not None:
                running.cancel()
            todo.extend(self.children.cancel_inside(tid))

    # -- start and stop --------------------------------------------------------------------

    async def recover(self) -> None:
        """Make every unfinished task true after a restart: DBOS resumes PENDING workflows of
        this code version; everything else is started, settled or marked interrupted."""
        executor_id = None if self._fence is None else self._fence.executor_id
        for task in await self.store.unfinished():
            status = await durable.status(task.id, strict=True)
            if executor_id is not None and (
                status is None
                and time.time() - task.created_at < _STARTING_S
                or status is not None
                and status.executor_id not in (None, executor_id)
            ):
                # A shared database: another live process runs it, or is starting it now.
                continue
            if status is None:
                if task.parent_id is None:
                    await self.start_workflow(task.id)  # recorded, never started
                else:
                    parent = await self.store.task_row(task.parent_id)
                    if parent.status.terminal:
                        await self._interrupt(task, "its parent ended before it started")
                continue
            if status.status in ("PENDING", "ENQUEUED"):
                if status.app_version != self.app_version:
                    await self.interrupt_elsewhere(
                        task,
                        f"the server's code changed (version {status.app_version} -> "
                        f"{self.app_version}) while it ran; it cannot resume on new code",
                    )
            else:
                await self._settle(task, status)

    async def _settle_if_dead(self, task_id: str) -> None:
        """A task whose workflow has ended without recording its outcome (DBOS failed it
        outside the agent, or the process that ran it lost the write) is settled here, so
        the parent waiting on it goes on."""
        status = await durable.status(task_id)
        if status is None or not status.ended:
            return
        task = await self.store.task_row(task_id)
        if not task.status.terminal:
            await self._settle(task, status)

    async def _settle(self, task: Task, workflow: durable.Workflow) -> None:
        status, error = outcomes.of_workflow(workflow.status, workflow.error)
        await self._finish(task, status, error=error)

    async def _interrupt(self, task: Task, reason: str) -> None:
        log.warning("task %s interrupted: %s", task.id, reason)
        await self._finish(
            task, TaskStatus.interrupted, error={"type": "Interrupted", "message": reason}
        )

    async def interrupt_elsewhere(self, task: Task, reason: str) -> None:
        """A task whose workflow no process here can resume: interrupted, and its workflow
        cancelled so nothing resumes it later."""
        await self._interrupt(task, reason)
        try:
            await durable.cancel([task.id])
        except durable.DurableError:
            pass

    async def stop(self) -> None:
        """Stop running coroutines without recording an outcome: the workflows stay PENDING
        in DBOS and resume at the next start."""
        self._stopping = True
        running = list(self._running.values())
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
