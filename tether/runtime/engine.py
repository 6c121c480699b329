"""The runtime: a top-level task is a DBOS workflow; its sub-agents run inside it.

DBOS resumes PENDING workflows of this executor at launch (and, on a shared database, a
live worker takes over a dead one's). A sub-agent is a task of its own (its row, its
status, its events, its steps) whose coroutine runs in the process of its parent's
workflow: a replay of the parent after a crash starts again the children it had started
and that had not ended, and each replays its own recorded steps. So a delegation costs one
commit of the log (a child's last step commits with its end, see context.py) and no DBOS
write; an agent that needs DBOS messaging (a model agent's
approvals) runs as a child workflow of its own instead (`AgentSpec.own_workflow`).

A task ends after its sub-agents: one that returns waits for those still running, and one
that fails cancels them. The tasks table, written through the event log, is the truth
users read: a status change is a `task.status` event committed together with the row update.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_error

from tether import quotas
from tether.db.store import Store, new_id
from tether.errors import (
    DelegationFailed,
    InvalidInput,
    NotDeterministic,
    NotFound,
    TaskCancelled,
    TaskError,
    TaskMoved,
)
from tether.events.log import Append, EventLog
from tether.model import TERMINAL, Event, Task, TaskStatus, dumps, dumps_within
from tether.runtime.agent import AgentRegistry
from tether.runtime.context import Child, TaskContext

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


_DBOS_ENDED = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


async def _workflow_status(task_id: str, *, strict: bool = False) -> Any:
    """DBOS's status of a task's workflow (None when unknown, or unreadable unless strict),
    looked up in a fresh context: from inside a workflow DBOS would record the lookup as one
    of its steps, and a replay (whose lookups fall at other times) would no longer match."""
    try:
        return await asyncio.create_task(
            DBOS.get_workflow_status_async(task_id), context=contextvars.Context()
        )
    except Exception:  # DBOS's errors, and the database's (a frozen worker's dead connection)
        if strict:
            raise
        return None


_LOOKUP_TRIES = 6  # about 6 s of retries
MAX_DEPTH = 20  # sub-agents nest at most this deep (a runaway recursion ends here)
_MAX_MESSAGE = 4000


def safe_text(text: str, limit: int = _MAX_MESSAGE) -> str:
    """An agent's error message as storable text: lone surrogates escaped, length bounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more)"


def error_of(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": safe_text(str(exc))}


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


def _task_of(row: dict[str, Any], input: Any) -> Task:
    """The Task of a row just created (Runtime._new_task_row)."""
    return Task(
        id=row["id"],
        session_id=row["session_id"],
        parent_id=row["parent_id"],
        agent=row["agent"],
        input=input,
        status=TaskStatus.queued,
        progress_n=None,
        progress_m=None,
        result=None,
        error=None,
        app_version=row["app_version"],
        created_at=row["created_at"],
        started_at=None,
        ended_at=None,
        last_seq=0,
    )


# On a shared database, a task recorded this recently and not yet started is being started
# by the process that recorded it.
_STARTING_S = 30.0


class Runtime:
    def __init__(
        self,
        store: Store,
        log: EventLog,
        registry: AgentRegistry,
        app_version: str,
        child_poll_s: float = 1.0,
        max_event_bytes: int = 1 << 20,
    ) -> None:
        self.store = store
        self.log = log
        self.registry = registry
        self.app_version = app_version
        self.child_poll_s = child_poll_s
        self.max_event_bytes = max_event_bytes
        self._stopping = False
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # On a shared database: this process's DBOS executor id (it recovers only its own
        # work), and how to tell the other processes to stop these tasks' coroutines.
        self.executor_id: str | None = None
        self.broadcast_cancel: Callable[[list[str]], Awaitable[None]] | None = None
        # On a shared database top-level tasks start through this DBOS queue (any worker
        # dequeues them); otherwise, and for sub-agents, in this process.
        self.task_queue: str | None = None
        self._waiting_in: dict[str, set[str]] = {}  # session id -> task ids waited on here
        # Sub-agents running here inside their parent: task id -> its coroutine, and
        # parent id -> those of its children.
        self._inside: dict[str, asyncio.Task[Any]] = {}
        self._inside_of: dict[str, set[str]] = {}
        # On a worker: its stale time and last heartbeat (monotonic). A worker silent for
        # longer may have been taken for dead, its tasks moved: until it knows, every step
        # and child start checks that its task is still its own (see `suspect`).
        self.stale_s: float | None = None
        self.beat_at = 0.0
        self.waking = False
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
        row = self._new_task_row(task_id, session_id, None, agent, clean)
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
            await self._start_workflow(task_id)
        except Exception as exc:
            log.error("task %s could not be started: %r", task_id, exc)
            task = await self.store.task_row(task_id)
            error = {"type": "NotStarted", "message": safe_text(str(exc))}
            try:
                await self.log.append(
                    _status_append(
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

    async def _start_workflow(self, task_id: str, *, top: bool = True) -> None:
        with SetWorkflowID(task_id):
            if top and self.task_queue is not None:
                await DBOS.enqueue_workflow_async(self.task_queue, run_task, task_id)
            else:
                await DBOS.start_workflow_async(run_task, task_id)

    def suspect(self) -> bool:
        """Whether this worker may have been taken for dead: steps and child starts then
        check with `fence` before they run (an in-memory test otherwise)."""
        return self.stale_s is not None and (
            self.waking or time.monotonic() - self.beat_at > self.stale_s
        )

    async def fence(self, task_id: str) -> None:
        """Raise TaskMoved if this task was handed to another worker (this one was frozen
        or cut off past the stale time): its copy here must do nothing more."""
        if await self._moved_elsewhere(task_id):
            raise TaskMoved(f"task {task_id} moved to another worker; its copy here stops")

    async def stop_moved(self) -> None:
        """After a silence past the stale time: stop the coroutines of the tasks (with the
        sub-agents inside them) that were handed to another worker meanwhile."""
        for task_id in [t for t in self._running if t not in self._inside]:
            if await self._moved_elsewhere(task_id):
                self.stop_running([task_id])

    async def start_child(self, ctx: TaskContext, k: int, agent: str, input: Any) -> Child:
        if self.suspect():
            await self.fence(ctx.task_id)
        spec = self.registry.get(agent)
        clean = spec.validate(input).model_dump(mode="json")
        child_id = f"{ctx.task_id}.{k}"
        if child_id.count(".") > MAX_DEPTH or len(child_id) > 255:
            raise TaskError(
                f"sub-agents nest at most {MAX_DEPTH} levels deep; this one would be deeper"
            )
        if ctx.fresh or not await self.store.task_exists(child_id):
            # A new sub-agent stores its input, events and result: not past the owner's
            # storage quota (a batch admitted at the door would otherwise write on).
            full = await quotas.session_storage_full(self.store.db, ctx.session_id, recent=True)
            if full is not None:
                raise TaskError(f"the sub-agent {agent!r} was not started: {full}")
        row = self._new_task_row(child_id, ctx.session_id, ctx.task_id, agent, clean)
        data = dumps_within(
            {"agent": agent, "input": clean, "parent_id": ctx.task_id},
            self.max_event_bytes,
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
            ctx._submit(append)
            return self._inside_child(ctx, _task_of(row, clean), fresh=True)
        created = await self.log.append(append)
        # Queued behind everything the parent emitted before: those are committed too.
        ctx._unflushed = False
        if created[0] is not None:
            if spec.own_workflow:
                await self._start_workflow(child_id, top=False)
                return Child(self, child_id)
            return self._inside_child(ctx, _task_of(row, clean), fresh=True)
        # Dropped: either a replay (the child exists) or this task has ended.
        try:
            existing = await self.store.task_row(child_id)
        except NotFound:
            raise TaskCancelled("the task has ended; it starts no sub-agents") from None
        if existing.agent != agent:
            raise NotDeterministic(
                f"task {ctx.task_id} is not deterministic: its sub-agent {k} is {agent!r} in "
                f"this run but was {existing.agent!r} when it was started"
            )
        if spec.own_workflow:
            await self._start_workflow(child_id, top=False)
            return Child(self, child_id)
        if existing.status.terminal:
            return Child(self, child_id)
        running = self._inside.get(child_id)
        if running is not None:
            return Child(self, child_id, ctx, running)
        return self._inside_child(ctx, existing, fresh=False)

    def _inside_child(self, ctx: TaskContext, task: Task, *, fresh: bool) -> Child:
        """Run a sub-agent's coroutine here, inside its parent's workflow (in a context of
        its own: DBOS must not take its calls for the parent's)."""
        run = asyncio.create_task(
            self._run_inside(task, fresh),
            name=f"tether-task-{task.id}",
            context=contextvars.Context(),
        )
        self._inside[task.id] = run
        self._inside_of.setdefault(ctx.task_id, set()).add(task.id)
        ctx.light.append((task.id, run))
        return Child(self, task.id, ctx, run)

    async def _run_inside(self, task: Task, fresh: bool) -> tuple[TaskStatus, Any, Any] | None:
        """A sub-agent's run: its outcome (status, result, error) once committed, or None if
        it ended otherwise (cancelled by a request, or stopped with the server)."""
        try:
            return await self._execute(task.id, task if fresh else None)
        except asyncio.CancelledError:
            return None
        finally:
            self._inside.pop(task.id, None)
            siblings = self._inside_of.get(task.parent_id or "")
            if siblings is not None:
                siblings.discard(task.id)
                if not siblings:
                    self._inside_of.pop(task.parent_id or "", None)

    async def execute(self, task_id: str) -> dict[str, Any]:
        """A task's workflow body (DBOS's): its outcome's status."""
        outcome = await self._execute(task_id, None)
        if outcome is None:  # it had ended otherwise meanwhile (a cancel): as the row says
            return {"status": (await self.store.task_row(task_id)).status.value}
        return {"status": outcome[0].value}

    async def _execute(
        self, task_id: str, fresh: Task | None
    ) -> tuple[TaskStatus, Any, Any] | None:
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
            running = _status_append(task, TaskStatus.running, started_at=time.time())
            if fresh is not None:
                running.fresh = True
                ctx._submit(running)  # commits with the child's first events
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
            if ctx._unconfirmed is None:
                await ctx.flush()
            await self._join_children(ctx)
            return await self._finish(task, TaskStatus.completed, result=result, ctx=ctx)
        except _CANCELLED:
            await self._end_children(ctx, "its parent task was cancelled")
            return await self._finish(task, TaskStatus.cancelled)
        except dbos_error.DBOSException as exc:
            # DBOS refuses to go on (e.g. the body did not replay the steps it recorded):
            # the task has failed, and says why, before DBOS marks the workflow.
            log.warning("task %s failed in DBOS: %r", task_id, exc)
            if await self._moved_elsewhere(task_id):
                raise
            await self._end_children(ctx, "its parent task failed")
            await self._finish(
                task,
                TaskStatus.failed,
                error={"type": "WorkflowError", "message": safe_text(str(exc))},
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
            await self._end_children(ctx, "its parent task failed")
            return await self._finish(task, TaskStatus.failed, error=error_of(exc))
        finally:
            if self._running.get(task_id) is current:  # not a later run's of the same task
                del self._running[task_id]

    async def _join_children(self, ctx: TaskContext) -> None:
        """A task whose body returned ends after the sub-agents it started and did not wait
        for (their outcomes are their own)."""
        runs = [run for _, run in ctx.light if not run.done()]
        if runs:
            await asyncio.wait(runs)

    async def _end_children(self, ctx: TaskContext, reason: str) -> None:
        """A task that failed or was cancelled first cancels the sub-agents it started that
        are still running here (and theirs)."""
        try:
            await ctx.flush()  # a child's creation may still be queued
        except Exception:  # noqa: BLE001 - what the parent could not record is not its outcome
            pass
        for child_id, run in ctx.light:
            if not run.done():
                try:
                    await self._cancel_tree(child_id, reason)
                except Exception:
                    log.exception("task %s: cancelling sub-agent %s failed", ctx.task_id, child_id)

    async def _finish(
        self,
        task: Task,
        status: TaskStatus,
        *,
        result: Any = None,
        error: Any = None,
        ctx: TaskContext | None = None,
    ) -> tuple[TaskStatus, Any, Any] | None:
        """Record a task's outcome. Retried until it is recorded (the disk may be full for a
        while): a task never stays `running` because its end could not be written. Returns
        (status, result, error) as recorded, or None if the task had ended already. With
        the task's context, the outcome commits with its last step when that step's record
        is still on its way (and raises if the step could not be recorded)."""
        data: dict[str, Any] = {}
        values: dict[str, Any] = {"ended_at": time.time()}
        if status is TaskStatus.completed:
            try:
                text = dumps_within(result, self.max_event_bytes, "the result")
            except ValueError as exc:
                status = TaskStatus.failed
                error = {"type": "InvalidResult", "message": f"the result cannot be stored: {exc}"}
            else:
                data["result"] = result
                values["result"] = text
        if error is not None:
            data["error"] = error
            values["error"] = dumps(error)
        append = _status_append(task, status, data, **values)
        # No key lookup for a first run's end: had the task ended already, its status
        # would drop this append.
        append.fresh = ctx is not None and ctx.fresh
        # As a reader of the row would see them (the JSON round trip).
        outcome = status, json.loads(values["result"]) if "result" in values else None, error
        if ctx is not None:
            landed = await ctx.end(append)
            if landed is not None:
                return None if landed[0] is None else outcome
        delay = 0.05
        while True:
            try:
                landed = await self.log.append(append)
                return None if landed[0] is None else outcome
            except Exception as exc:
                if self._stopping:
                    raise
                log.warning(
                    "could not record task %s %s (%s); retrying in %.2f s",
                    task.id,
                    status.value,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- waiting for children --------------------------------------------------------------

    def _on_commit(self, _session_id: str, events: list[Event]) -> None:
        for ev in events:
            if ev.type == "task.status" and ev.task_id in self._waiters:
                if TaskStatus(json.loads(ev.data)["status"]) in TERMINAL:
                    for fut in self._waiters.pop(ev.task_id):
                        if not fut.done():
                            fut.set_result(None)

    def on_remote_commit(self, session_id: str, _head: int) -> None:
        """Another process committed to this session: the tasks waited on in it are read
        again (one of them may have ended there)."""
        for task_id in self._waiting_in.get(session_id, ()):
            for fut in self._waiters.get(task_id, ()):
                if not fut.done():
                    fut.set_result(None)

    def wake_waiters(self) -> None:
        """Every task waited on here is read again (notifications may have been missed)."""
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    async def wait_terminal(self, task_id: str) -> Task:
        session_id: str | None = None
        try:
            while True:
                fut = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(task_id, []).append(fut)
                task = await self.store.task_row(task_id)
                if task.status.terminal:
                    return task
                if session_id is None:
                    session_id = task.session_id
                    self._waiting_in.setdefault(session_id, set()).add(task_id)
                try:
                    # Woken by a commit here or (on a shared database) a notification from
                    # another process; the timeout is the backstop.
                    await asyncio.wait_for(fut, self.child_poll_s)
                except TimeoutError:
                    await self._settle_if_dead(task_id)
                finally:
                    waiters = self._waiters.get(task_id)
                    if waiters and fut in waiters:
                        waiters.remove(fut)
                        if not waiters:
                            del self._waiters[task_id]
        finally:
            if session_id is not None and task_id not in self._waiters:
                ids = self._waiting_in.get(session_id)
                if ids is not None:
                    ids.discard(task_id)
                    if not ids:
                        del self._waiting_in[session_id]

    async def child_result(
        self,
        task_id: str,
        run: asyncio.Task[tuple[TaskStatus, Any, Any] | None] | None = None,
        parent: TaskContext | None = None,
    ) -> Any:
        outcome = None
        if run is not None:
            # Shielded: a parent that stops waiting does not stop its child.
            outcome = await asyncio.shield(run)
            if parent is not None and parent.failed:
                await parent.flush()  # the child's creation was not recorded: raises why
        if outcome is None:
            task = await self.wait_terminal(task_id)
            outcome = (task.status, task.result, task.error)
        status, result, error = outcome
        if status is TaskStatus.completed:
            return result
        raise DelegationFailed(task_id, error or {"status": status.value})

    # -- cancelling ------------------------------------------------------------------------

    async def cancel(self, task_id: str, owner: str) -> Task:
        """Cancel a task and every descendant: the coroutines running here first (so none
        runs another line once the statuses say cancelled), then the statuses (the truth
        users read), then DBOS (so nothing resumes them). Repeated until nothing under the
        task is unfinished: a child created while this runs is caught by the next round,
        and once the task is terminal the log refuses it any new child."""
        await self.store.task(task_id, owner)
        await self._cancel_tree(task_id, "cancelled by request")
        return await self.store.task(task_id, owner)

    async def _cancel_tree(self, task_id: str, reason: str) -> None:
        while tree := [t for t in await self.store.subtree(task_id) if not t.status.terminal]:
            self.stop_running([t.id for t in tree])
            now = time.time()
            await self.log.append(
                *(
                    _status_append(t, TaskStatus.cancelled, {"reason": reason}, ended_at=now)
                    for t in tree
                )
            )
            ids = [t.id for t in tree]
            if self.broadcast_cancel is not None:
                await self.broadcast_cancel(ids)  # coroutines of these tasks on other processes
            try:
                await DBOS.cancel_workflows_async(ids)
            except dbos_error.DBOSException as exc:
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
            inside = self._inside.get(tid)
            if inside is not None:
                inside.cancel()
            todo.extend(self._inside_of.get(tid, ()))

    # -- start and stop --------------------------------------------------------------------

    async def recover(self) -> None:
        """Make every unfinished task true after a restart: DBOS resumes PENDING workflows of
        this code version; everything else is started, settled or marked interrupted."""
        for task in await self.store.unfinished():
            status = await DBOS.get_workflow_status_async(task.id)
            if self.executor_id is not None and (
                status is None
                and time.time() - task.created_at < _STARTING_S
                or status is not None
                and status.executor_id not in (None, self.executor_id)
            ):
                # A shared database: another live process runs it, or is starting it now.
                continue
            if status is None:
                if task.parent_id is None:
                    await self._start_workflow(task.id)  # recorded, never started
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
                await self._settle(task, status.status, status.error)

    async def _moved_elsewhere(self, task_id: str) -> bool:
        """On a shared database: whether this task was handed to another worker while it ran
        here (this worker was taken for dead). Its failure here is then not its outcome: a
        frozen worker waking up must not fail a task that another runs."""
        if self.executor_id is None:
            return False
        # A sub-agent run inside its parent moves with the nearest workflow above it. A
        # worker waking from a freeze may find its connections dead: the lookup is retried
        # for a while, since "not moved" would let it record the failure of a moved task.
        parts = task_id.split(".")
        status = None
        for attempt in range(_LOOKUP_TRIES):
            try:
                for i in range(len(parts), 0, -1):
                    status = await _workflow_status(".".join(parts[:i]), strict=True)
                    if status is not None:
                        break
                break
            except Exception as exc:  # noqa: BLE001 - retried, then taken as not moved
                log.warning("task %s: looking up its workflow failed (%r)", task_id, exc)
                await asyncio.sleep(0.1 * 2**attempt)
        moved = status is not None and (
            status.status == "ENQUEUED" or status.executor_id not in (None, self.executor_id)
        )
        if moved:
            log.warning("task %s moved to another worker while it ran here; left to it", task_id)
        return moved

    async def _settle_if_dead(self, task_id: str) -> None:
        """A task whose workflow has ended without recording its outcome (DBOS failed it
        outside the agent, or the process that ran it lost the write) is settled here, so
        the parent waiting on it goes on."""
        status = await _workflow_status(task_id)
        if status is None or status.status not in _DBOS_ENDED:
            return
        task = await self.store.task_row(task_id)
        if not task.status.terminal:
            await self._settle(task, status.status, status.error)

    async def _settle(self, task: Task, dbos_status: str, dbos_error_: Any) -> None:
        if dbos_status == "SUCCESS":
            await self._finish(task, TaskStatus.completed, result=None)
        elif dbos_status == "CANCELLED":
            await self._finish(task, TaskStatus.cancelled)
        else:
            reason = f"its workflow ended as {dbos_status} without recording an outcome"
            if dbos_error_:
                reason += f": {dbos_error_}"
            await self._finish(
                task,
                TaskStatus.failed,
                error={"type": "WorkflowError", "message": safe_text(reason)},
            )

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
            await DBOS.cancel_workflow_async(task.id)
        except dbos_error.DBOSException:
            pass

    async def stop(self) -> None:
        """Stop running coroutines without recording an outcome: the workflows stay PENDING
        in DBOS and resume at the next start."""
        self._stopping = True
        running = list(self._running.values())
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
