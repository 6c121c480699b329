"""What an agent sees of its task: emit, progress, checkpointed steps, delegation.

Idempotent events. Every emit carries a key that is the same when the code runs again:
`{task}:w{n}` for the n-th emit of the workflow body (replayed deterministically after a
crash) and `{task}:s{step}.{n}` inside a step. The log drops a key it already holds, so a
step that re-runs after `kill -9` re-emits nothing that was already committed, and a client
never sees an event twice. A step's events are committed before its checkpoint, so a step
that DBOS considers done never has missing events.

A step whose output is not deterministic (a model call) calls `await ctx.new_attempt()`
first: its events then carry keys of that attempt (`{task}:s{step}.a{k}.{n}`), so a re-run
after a crash appends its new output instead of having the first n events dropped as
replays of different ones, and it learns what earlier attempts committed, to supersede.

Steps are Tether's own: the n-th `ctx.step` of a body records its outcome (output, or the
exception it raised) in `tether_steps`, in the same transaction as the events it emitted,
and a replay returns the recorded outcome instead of running it again. A replay that runs a
different step at the same place fails the task as not deterministic.

A step that returns does not wait for its record's commit: the task's next step, start,
flush or end does. So a task whose body ends with a step (a batch's item) commits its last
events, the step's record and its end in one transaction: a delegation costs one commit.
What the body appends meanwhile is on the same chain (`Chain` in events/append.py): it commits
only if the record does. A record that does not land fails the task, since its body went on
from an output that a replay would not see.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import pickle
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tether.errors import EventNotRecorded, NotDeterministic, StepFailed
from tether.events.log import Append, Chain, EventLog
from tether.model import Event, Task, dumps_within

T = TypeVar("T")


class Host(Protocol):
    """What a task's context needs of the runtime that runs it (`engine.Runtime`)."""

    @property
    def log(self) -> EventLog:
        """The event log the task appends to."""
        ...

    @property
    def max_event_bytes(self) -> int:
        """The largest event, sub-agent input or result a task may record."""
        ...

    def suspect(self) -> bool:
        """Whether this worker may have been taken for dead (its tasks moved elsewhere): the
        task then calls `fence` before a step, a child's start or a step's failure."""
        ...

    async def fence(self, task_id: str) -> None:
        """Raise TaskMoved if the task was handed to another worker: its copy here stops."""
        ...

    async def start_child(self, ctx: TaskContext, k: int, agent: str, input: Any) -> Child:
        """Start the task's k-th sub-agent (or, on a replay, find the one started then)."""
        ...

    async def wait_terminal(self, task_id: str) -> Task:
        """Wait until a task has ended (any way); returns it."""
        ...


@dataclass(slots=True)
class _StepScope:
    ctx: TaskContext
    prefix: str
    step: int
    n: int = 0
    attempt: int = 0


def _encode(ok: bool, value: Any) -> str:
    return base64.b64encode(pickle.dumps((ok, value), pickle.HIGHEST_PROTOCOL)).decode("ascii")


def _decode(text: str) -> tuple[bool, Any]:
    ok, value = pickle.loads(base64.b64decode(text))
    return ok, value


def _storable_error(exc: Exception) -> Exception:
    """The exception as it can be recorded and raised again on replay: itself, if it survives
    a pickle round trip (exceptions with required keyword arguments do not), else StepFailed
    with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip means: store a summary
        return StepFailed(f"{type(exc).__name__}: {exc}")


_MAX_PROGRESS = 2**31 - 1  # the column is a 32-bit INTEGER on Postgres

_scope: ContextVar[_StepScope | None] = ContextVar("tether_step_scope", default=None)


class Child:
    """A delegated task that has been started. `await child.result()` waits for it."""

    def __init__(self, task_id: str, result: Callable[[], Awaitable[Any]]) -> None:
        self.task_id = task_id
        self._result = result

    async def result(self) -> Any:
        """The child's result once it has ended; raises DelegationFailed if it did not
        complete."""
        return await self._result()


class TaskContext:
    def __init__(self, runtime: Host, task: Task) -> None:
        self._runtime = runtime
        self.task = task
        self.task_id = task.id
        self.session_id = task.session_id
        self._emits = 0
        self._children = 0
        self._steps = 0
        # Set by the runtime on a replay: the outcomes recorded for this task's steps, by n.
        self.recorded: dict[int, tuple[str, str]] = {}
        # True when this body has never run before (no step and no child of it can exist
        # yet): a child's creation need not be awaited before the child starts.
        self.fresh = False
        self.light: list[tuple[str, asyncio.Task[Any]]] = []  # children run inside this one
        self._unflushed = False
        # What this task appends between two flushes: once one fails, no later one commits.
        self._chain = Chain()
        # A step that returned before its record was committed (see `_close_step`), and the
        # failure that ends this task if that record did not land.
        self._unconfirmed: tuple[int, str, Append] | None = None
        self._broken: EventNotRecorded | None = None

    @property
    def max_event_bytes(self) -> int:
        """The largest event, sub-agent input or result this task may record."""
        return self._runtime.max_event_bytes

    # -- events ----------------------------------------------------------------------------

    def emit(self, type: str, data: Any = None) -> None:
        """Append an event to the session log. Returns at once; the event is durable by the
        end of the current step (or `await ctx.flush()`), which raises if it could not be
        recorded. Raises InvalidJSON / ValueError here, in the agent, for data the log
        cannot carry (NaN, lone surrogates, too deep, too large) or a reserved type."""
        if not isinstance(type, str) or not 0 < len(type) <= 128:
            raise ValueError(f"an event type is a string of 1-128 characters, got {type!r}")
        if type.startswith("task."):
            raise ValueError(f"event types starting with 'task.' are the runtime's: {type!r}")
        self.enqueue(self._append(type, data, None))

    def enqueue(self, append: Append) -> None:
        """Queue an append of this task's behind what it queued before, on its chain (it
        commits only if they do). It is durable by the next flush, which raises if it could
        not be recorded."""
        append.chain = self._chain
        self._runtime.log.enqueue(append)
        self._unflushed = True

    def mark_flushed(self) -> None:
        """Everything this task queued is committed (the caller awaited an append queued
        behind it): the next flush need not wait for the log."""
        self._unflushed = False

    @property
    def has_unconfirmed_step(self) -> bool:
        """Whether the record of the task's last step is still on its way (`end` then
        commits the task's end with it)."""
        return self._unconfirmed is not None

    @property
    def failed(self) -> bool:
        """Whether something this task appended could not be recorded (a flush raises it)."""
        return self._broken is not None or self._chain.error is not None

    def _append(self, type: str, data: Any, task_values: dict[str, Any] | None) -> Append:
        text = dumps_within(data, self._runtime.max_event_bytes, f"event {type!r}")
        scope = _scope.get()
        if scope is not None and scope.ctx is self:
            key = f"{scope.prefix}.{scope.n}"
            scope.n += 1
        else:
            key = f"{self.task_id}:w{self._emits}"
            self._emits += 1
        return Append(
            self.session_id,
            self.task_id,
            self.task.parent_id,
            type,
            text,
            key=key,
            task_values=task_values,
            fresh=self.fresh,
        )

    async def flush(self) -> None:
        """Wait until everything emitted so far is committed. Raises EventNotRecorded if
        any of it could not be, since the previous flush."""
        await self._confirm()
        await self._barrier()
        error = self._chain.error
        if error is not None:
            self._chain = Chain()  # told once; what the task appends next may commit
            raise EventNotRecorded(
                f"an event of task {self.task_id} could not be recorded: {error}"
            ) from error

    async def _barrier(self) -> None:
        if self._unflushed:
            self._unflushed = False
            # It resolves after everything queued before it, whose errors are in the chain.
            await self._runtime.log.submit_many(())

    async def _confirm(self) -> None:
        """Wait for the record of the step that returned before it was committed. If it
        did not land (it, or an event of the step, could not be recorded), the task fails:
        its body has gone on from the step's output, and a replay, which would raise at the
        step, could take another path. The step's outcome becomes that failure (as for a
        step that fails to record before it returns), nothing the task appends after it
        commits, and every later call of the task raises it."""
        if self._broken is not None:
            raise self._broken
        if self._unconfirmed is None:
            return
        n, name, record = self._unconfirmed
        self._unconfirmed = None
        await self._barrier()
        if record.error is None:
            return
        if self._runtime.suspect():
            # Frozen past the stale time: if the task moved, this is not its outcome.
            await self._runtime.fence(self.task_id)
        self._broken = EventNotRecorded(
            f"step {n} ({name!r}) of task {self.task_id} could not be recorded: {record.error}"
        )
        self._broken.__cause__ = record.error
        # The chain stays failed (it refuses what the task appends from now on): the new
        # record goes on none.
        replaced = self._step_append(n, name, False, _storable_error(self._broken), True)
        try:
            await self._runtime.log.append(replaced)
        except Exception:  # noqa: BLE001 - the task fails anyway; a replay re-runs the step
            pass
        raise self._broken

    async def end(self, append: Append) -> list[Event | None] | None:
        """Commit the task's end (a status append) behind what it appended, in one commit
        with the record of its last step when that is still on its way. Returns what
        landed, or None where the caller must commit it as usual: nothing was unconfirmed,
        or the end itself failed (the disk is full) after everything before it landed.
        Raises EventNotRecorded if something before it could not be recorded."""
        if self._unconfirmed is None:
            return None
        append.chain = self._chain
        try:
            landed = await self._runtime.log.append(append)
        except Exception:  # noqa: BLE001 - whose failure it was is sorted out here
            if self._chain.first is append:
                self._chain = Chain()
            append.chain = None
            await self.flush()  # raises what failed before the end
            return None
        self._unconfirmed = None
        return landed

    async def new_attempt(self) -> tuple[int, list[Event]]:
        """Inside a step: begin a fresh attempt of it (see the module docstring). Returns
        the attempt's number (1, 2, ...) and the events earlier attempts committed, in order:
        those of a run that crashed, and of tries in this run."""
        scope = _scope.get()
        if scope is None or scope.ctx is not self:
            raise RuntimeError("ctx.new_attempt() is for inside one of this task's steps")
        await self.flush()
        base = scope.prefix.rsplit(".a", 1)[0] if scope.attempt else scope.prefix
        prior = await self._runtime.log.read_keyed(self.session_id, f"{base}.a")
        done = [int(key[len(base) + 2 :].split(".", 1)[0]) for key, _ in prior]
        scope.attempt = max([scope.attempt, *done]) + 1
        scope.prefix = f"{base}.a{scope.attempt}"
        scope.n = 0
        return scope.attempt, [ev for _, ev in prior]

    def progress(self, n: int, m: int, **data: Any) -> None:
        """Report progress n of m (kept on the task row and emitted as `task.progress`)."""
        for name, v in (("n", n), ("m", m)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _MAX_PROGRESS:
                raise ValueError(
                    f"progress {name} must be an integer 0..{_MAX_PROGRESS}, got {v!r}"
                )
        self.enqueue(
            self._append(
                "task.progress", {**data, "n": n, "m": m}, {"progress_n": n, "progress_m": m}
            )
        )

    # -- steps -----------------------------------------------------------------------------

    async def step(
        self, fn: Callable[..., T | Awaitable[T]], *args: Any, name: str | None = None
    ) -> T:
        """Run fn once: its outcome is checkpointed with its events, and a replay after a
        crash returns the recorded output (or raises the recorded exception) instead of
        running it again. A step that was in flight at the crash runs again, so its side
        effects must be idempotent. A step called inside a step is part of it.

        It returns before its record is committed; the task's next step, start, flush or end
        waits for that (and fails the task if the record did not land). A body that calls
        DBOS itself (`DBOS.recv`) flushes first, so DBOS's record of the call never lands
        before the step it follows."""
        name = str(name or getattr(fn, "__name__", "step"))[:256]  # as the record keeps it
        outer = _scope.get()
        if outer is not None and outer.ctx is self:
            out = fn(*args)
            return await out if inspect.isawaitable(out) else out
        await self._confirm()
        if self._runtime.suspect():
            await self._runtime.fence(self.task_id)
        self._steps += 1
        n = self._steps
        recorded = self.recorded.pop(n, None)
        if recorded is not None:
            if recorded[0] != name:
                raise NotDeterministic(
                    f"task {self.task_id} is not deterministic: its step {n} is {name!r} in "
                    f"this run but was {recorded[0]!r} when it was recorded; after a restart "
                    "an agent must run the same steps in the same order"
                )
            ok, value = _decode(recorded[1])
            if ok:
                return value  # type: ignore[no-any-return]
            raise value
        token = _scope.set(_StepScope(self, f"{self.task_id}:s{n}", n))
        try:
            try:
                out = fn(*args)
                if inspect.isawaitable(out):
                    out = await out
            except Exception as exc:
                await self._close_step(n, name, False, _storable_error(exc))
                raise
            await self._close_step(n, name, True, out)
            return out
        finally:
            _scope.reset(token)

    async def _close_step(self, n: int, name: str, ok: bool, value: Any) -> None:
        """Record the step's outcome behind its events (one commit with them, as a rule).

        A step that returned does not wait for that commit: the task's next call (a step, a
        sub-agent's start, a flush, its end) does (`_confirm`), so the last step of a task
        and the task's end commit together. What the body appends meanwhile is queued behind
        the record, on the same chain: it commits only if the record does.

        A step that raised waits. If one of its events could not be recorded, that failure
        is the step's outcome instead, on replay too (so a replay takes the path this run
        took)."""
        record = self._record(n, name, ok, value)
        if ok:
            self._unconfirmed = (n, name, record)
            return
        try:
            await self.flush()
        except EventNotRecorded as failed:
            if self._runtime.suspect():
                # This worker was frozen mid-step (its connection died meanwhile): if the
                # task moved, the failure is not its outcome, and replacing the record would
                # make the new owner's replay fail.
                await self._runtime.fence(self.task_id)
            self._record(n, name, False, _storable_error(failed), replace=True)
            await self.flush()
            raise

    def _record(self, n: int, name: str, ok: bool, value: Any, replace: bool = False) -> Append:
        record = self._step_append(n, name, ok, value, replace)
        self.enqueue(record)
        return record

    def _step_append(self, n: int, name: str, ok: bool, value: Any, replace: bool) -> Append:
        try:
            text = _encode(ok, value)
        except Exception as exc:
            raise TypeError(
                f"the output of step {name!r} cannot be recorded (it must pickle): {exc}"
            ) from exc
        return Append(
            self.session_id,
            self.task_id,
            self.task.parent_id,
            "task.step",
            "null",
            step=(n, name, text, replace),
        )

    @property
    def step_id(self) -> int:
        """Inside a step: its number in the body (1, 2, ...), the same on every replay."""
        scope = _scope.get()
        if scope is None or scope.ctx is not self:
            raise RuntimeError("ctx.step_id is for inside one of this task's steps")
        return scope.step

    async def sleep(self, seconds: float) -> None:
        """A durable sleep: after a crash, it waits only for what is left."""
        end = await self.step(lambda: time.time() + seconds, name="sleep")
        await asyncio.sleep(max(0.0, end - time.time()))

    # -- delegation ------------------------------------------------------------------------

    async def start(self, agent: str, input: Any) -> Child:
        """Start a child task (a sub-agent) and return at once; `await child.result()`.

        Start children one after another from the agent body (or with `gather`): the order
        of starts is part of what a replay must repeat."""
        k = self._children
        self._children += 1
        await self._confirm()
        if self.failed:
            await self.flush()  # raises what could not be recorded
        return await self._runtime.start_child(self, k, agent, input)

    async def wait_for(self, task_id: str) -> Task:
        """Wait until another task has ended (any way); returns it."""
        await self.flush()
        return await self._runtime.wait_terminal(task_id)

    async def delegate(self, agent: str, input: Any) -> Any:
        """Run a sub-agent as a child task and return its result."""
        child = await self.start(agent, input)
        return await child.result()

    async def gather(self, *calls: tuple[str, Any]) -> list[Any]:
        """Run several sub-agents at once: [(agent, input), ...] -> their results, in order."""
        children = [await self.start(agent, inp) for agent, inp in calls]
        return list(await asyncio.gather(*(c.result() for c in children)))
