"""The runtime: every task is a DBOS workflow (a child task is a child workflow).

DBOS checkpoints steps and child starts, and resumes PENDING workflows of this executor at
launch. The tasks table, written through the event log, is the truth users read: a status
change is a `task.status` event committed together with the row update.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_error

from tether.db.store import Store, new_id
from tether.errors import DelegationFailed, NotFound, TaskCancelled
from tether.events.log import Append, EventLog
from tether.model import TERMINAL, Event, Task, TaskStatus, dumps
from tether.runtime.agent import AgentRegistry
from tether.runtime.context import TaskContext

log = logging.getLogger(__name__)

_CANCELLED = (
    TaskCancelled,
    dbos_error.DBOSWorkflowCancelledError,
    dbos_error.DBOSAwaitedWorkflowCancelledError,
)

_runtime: Runtime | None = None


@DBOS.workflow(name="tether.task")
async def run_task(task_id: str) -> dict[str, Any]:
    assert _runtime is not None, "the runtime is not started"
    return await _runtime.execute(task_id)


def _status_append(
    task: Task, status: TaskStatus, data: dict[str, Any] | None = None, **values: Any
) -> Append:
    return Append(
        task.session_id,
        task.id,
        task.parent_id,
        "task.status",
        dumps({"status": status.value, **(data or {})}),
        key=f"{task.id}:status:{status.value}",
        status=status,
        task_values=values,
    )


class Runtime:
    def __init__(
        self,
        store: Store,
        log: EventLog,
        registry: AgentRegistry,
        app_version: str,
        child_poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self.log = log
        self.registry = registry
        self.app_version = app_version
        self.child_poll_s = child_poll_s
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        log.listeners.append(self._on_commit)

    def activate(self) -> None:
        global _runtime
        _runtime = self

    # -- creating and running --------------------------------------------------------------

    def _new_task_row(
        self, task_id: str, session_id: str, parent_id: str | None, agent: str, input: Any
    ) -> dict[str, Any]:
        return {
            "id": task_id,
            "session_id": session_id,
            "parent_id": parent_id,
            "agent": agent,
            "input": dumps(input),
            "status": TaskStatus.queued.value,
            "app_version": self.app_version,
            "created_at": time.time(),
        }

    def _validated(self, agent: str, input: Any) -> Any:
        return self.registry.get(agent).validate(input).model_dump(mode="json")

    async def create_task(self, session_id: str, agent: str, input: Any) -> Task:
        """Validate, record (task row + `task.created`), then start the workflow."""
        clean = self._validated(agent, input)
        task_id = new_id("t")
        row = self._new_task_row(task_id, session_id, None, agent, clean)
        created = await self.log.append(
            Append(
                session_id,
                task_id,
                None,
                "task.created",
                dumps({"agent": agent, "input": clean, "parent_id": None}),
                key=f"{task_id}:created",
                new_task=row,
            )
        )
        if created[0] is None:
            raise NotFound(f"session {session_id} not found")
        await self._start_workflow(task_id)
        return await self.store.task(task_id, None)

    async def _start_workflow(self, task_id: str) -> None:
        with SetWorkflowID(task_id):
            await DBOS.start_workflow_async(run_task, task_id)

    async def start_child(self, ctx: TaskContext, k: int, agent: str, input: Any) -> str:
        clean = self._validated(agent, input)
        child_id = f"{ctx.task_id}.{k}"
        row = self._new_task_row(child_id, ctx.session_id, ctx.task_id, agent, clean)
        created = await self.log.append(
            Append(
                ctx.session_id,
                child_id,
                ctx.task_id,
                "task.created",
                dumps({"agent": agent, "input": clean, "parent_id": ctx.task_id}),
                key=f"{child_id}:created",
                new_task=row,
            )
        )
        if created[0] is None:
            # Dropped: either a replay (the child exists) or this task has ended.
            try:
                await self.store.task(child_id, None)
            except NotFound:
                raise TaskCancelled(f"task {ctx.task_id} has ended; it starts no children") from None
        await self._start_workflow(child_id)
        return child_id

    async def execute(self, task_id: str) -> dict[str, Any]:
        task = await self.store.task(task_id, None)
        if task.status.terminal:
            return {"status": task.status.value}
        if task.agent not in self.registry:
            await self._finish(
                task,
                TaskStatus.interrupted,
                error={
                    "type": "AgentMissing",
                    "message": f"agent {task.agent!r} is not registered",
                },
            )
            return {"status": TaskStatus.interrupted.value}
        spec = self.registry.get(task.agent)
        ctx = TaskContext(self, task)
        current = asyncio.current_task()
        assert current is not None
        self._running[task_id] = current
        try:
            await self.log.append(_status_append(task, TaskStatus.running, started_at=time.time()))
            result = await spec.fn(ctx, spec.validate(task.input))
            await ctx.flush()
            await self._finish(task, TaskStatus.completed, result=result)
        except _CANCELLED:
            await self._finish(task, TaskStatus.cancelled)
        except dbos_error.DBOSException:
            raise
        except Exception as exc:  # noqa: BLE001 - an agent's failure is the task's failure
            log.info("task %s failed: %r", task_id, exc)
            await self._finish(
                task, TaskStatus.failed, error={"type": type(exc).__name__, "message": str(exc)}
            )
        finally:
            self._running.pop(task_id, None)
        return {"status": (await self.store.task(task_id, None)).status.value}

    async def _finish(
        self, task: Task, status: TaskStatus, *, result: Any = None, error: Any = None
    ) -> None:
        data: dict[str, Any] = {}
        values: dict[str, Any] = {"ended_at": time.time()}
        if status is TaskStatus.completed:
            data["result"] = result
            values["result"] = dumps(result)
        if error is not None:
            data["error"] = error
            values["error"] = dumps(error)
        await self.log.append(_status_append(task, status, data, **values))

    # -- waiting for children --------------------------------------------------------------

    def _on_commit(self, _session_id: str, events: list[Event]) -> None:
        for ev in events:
            if ev.type == "task.status" and ev.task_id in self._waiters:
                if TaskStatus(json.loads(ev.data)["status"]) in TERMINAL:
                    for fut in self._waiters.pop(ev.task_id):
                        if not fut.done():
                            fut.set_result(None)

    async def wait_terminal(self, task_id: str) -> Task:
        while True:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(task_id, []).append(fut)
            task = await self.store.task(task_id, None)
            if task.status.terminal:
                return task
            try:
                # The database re-check covers a child finished by another process.
                await asyncio.wait_for(fut, self.child_poll_s)
            except TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(task_id)
                if waiters and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        del self._waiters[task_id]

    async def child_result(self, task_id: str) -> Any:
        task = await self.wait_terminal(task_id)
        if task.status is TaskStatus.completed:
            return task.result
        raise DelegationFailed(task_id, task.error or {"status": task.status.value})

    # -- cancelling ------------------------------------------------------------------------

    async def cancel(self, task_id: str, owner: str) -> Task:
        """Cancel a task and every descendant: statuses first (the truth users read), then
        DBOS (so nothing resumes them), then the coroutines running here."""
        await self.store.task(task_id, owner)
        tree = [t for t in await self.store.subtree(task_id) if not t.status.terminal]
        if tree:
            # The coroutines first, so none of them runs another line once the statuses
            # say cancelled (a parent woken by its child's cancellation would go on).
            for t in tree:
                running = self._running.get(t.id)
                if running is not None:
                    running.cancel()
            now = time.time()
            await self.log.append(
                *(
                    _status_append(
                        t, TaskStatus.cancelled, {"reason": "cancelled by request"}, ended_at=now
                    )
                    for t in tree
                )
            )
            ids = [t.id for t in tree]
            try:
                await DBOS.cancel_workflows_async(ids)
            except dbos_error.DBOSException as exc:
                log.warning("DBOS cancel of %s: %r", ids, exc)
        return await self.store.task(task_id, owner)

    # -- start and stop --------------------------------------------------------------------

    async def recover(self) -> None:
        """Make every unfinished task true after a restart: DBOS resumes PENDING workflows of
        this code version; everything else is started, settled or marked interrupted."""
        for task in await self.store.unfinished():
            status = await DBOS.get_workflow_status_async(task.id)
            if status is None:
                if task.parent_id is None:
                    await self._start_workflow(task.id)  # recorded, never started
                else:
                    parent = await self.store.task(task.parent_id, None)
                    if parent.status.terminal:
                        await self._interrupt(task, "its parent ended before it started")
                continue
            if status.status in ("PENDING", "ENQUEUED"):
                if status.app_version != self.app_version:
                    await self._interrupt(
                        task,
                        f"the server's code changed (version {status.app_version} -> "
                        f"{self.app_version}) while it ran; it cannot resume on new code",
                    )
                    try:
                        await DBOS.cancel_workflow_async(task.id)
                    except dbos_error.DBOSException:
                        pass
            elif status.status == "SUCCESS":
                await self._finish(task, TaskStatus.completed, result=None)
            elif status.status == "CANCELLED":
                await self._finish(task, TaskStatus.cancelled)
            else:
                await self._finish(
                    task,
                    TaskStatus.failed,
                    error={"type": "WorkflowError", "message": str(status.error)},
                )

    async def _interrupt(self, task: Task, reason: str) -> None:
        log.warning("task %s interrupted: %s", task.id, reason)
        await self._finish(
            task, TaskStatus.interrupted, error={"type": "Interrupted", "message": reason}
        )

    async def stop(self) -> None:
        """Stop running coroutines without recording an outcome: the workflows stay PENDING
        in DBOS and resume at the next start."""
        running = list(self._running.values())
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
