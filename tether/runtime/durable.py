"""DBOS, the durable execution underneath the runtime: every call Tether makes to it is here.

A top-level task is the DBOS workflow `tether.task` (its body is the runtime's `execute`,
given to `launch`), started directly or through a queue; a sub-agent registered
`own_workflow` is one too. DBOS resumes PENDING workflows of this executor at launch, and
carries the messages approvals wait for (`send`, `recv`). Statuses come back as `Workflow`,
Tether's own record, so no other module sees a DBOS type. DBOS resumes a task; what its body
then replays (each step's recorded outcome, each emit's key) is Tether's own (context.py),
apart from a `recv`, which DBOS records.

Three things reach past DBOS's public API: the re-enqueue of a dead worker's workflow (its
system database object's `reenqueue_for_recovery`), pinning this worker's sub-agents to
a queue before launch (an UPDATE of its `workflow_status` table), and waking DBOS's queue
threads between their polls (`wake_queues`: it wraps `dbos._dbos.queue_thread`). `check()`, run at start
before the launch, verifies that what these rely on still exists, so that a DBOS upgrade
that moved them fails the start with an error naming the version, not a wrong answer later.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import importlib.metadata
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_error

Execute = Callable[[str], Awaitable[dict[str, Any]]]

# DBOS runs workflows by name from a module-level function: this is the body it calls.
_execute: Execute | None = None


@DBOS.workflow(name="tether.task")
async def _run_task(task_id: str) -> dict[str, Any]:
    assert _execute is not None, "the runtime is not started"
    return await _execute(task_id)


class IncompatibleDBOS(RuntimeError):
    """The installed DBOS lacks something this module relies on (see `check`)."""


class _Absent(Exception):
    """Stands for a DBOS exception class the installed version lacks (never raised;
    `check` reports it)."""


def _error_class(name: str) -> type[BaseException]:
    found = getattr(dbos_error, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else _Absent


# DBOS refusing to go on with a workflow (e.g. a replay that does not match its record).
DurableError = _error_class("DBOSException")
# A workflow cancelled under the code that runs it (or under a workflow it awaits); the
# first is a BaseException, so that agents' `except Exception` does not swallow it.
CANCELLED_ERRORS: tuple[type[BaseException], ...] = (
    _error_class("DBOSWorkflowCancelledError"),
    _error_class("DBOSAwaitedWorkflowCancelledError"),
)
_ERROR_NAMES = ("DBOSException", "DBOSWorkflowCancelledError", "DBOSAwaitedWorkflowCancelledError")
# The columns of DBOS's workflow_status that `pin_pending` reads and writes.
_STATUS_COLUMNS = ("status", "executor_id", "queue_name")


def version() -> str:
    try:
        return importlib.metadata.version("dbos")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def missing_internals() -> list[str]:
    """What this module uses of DBOS beyond its public API and does not find installed."""
    missing: list[str] = []

    def lookup(module: str, *names: str) -> Any:
        try:
            found: Any = importlib.import_module(module)
        except ImportError:
            missing.append(module)
            return None
        for name in names:
            found = getattr(found, name, None)
            if found is None:
                missing.append(f"{module}.{'.'.join(names)}")
                return None
        return found

    lookup("dbos._dbos", "_get_dbos_instance")
    if not isinstance(getattr(DBOS, "_sys_db", None), property):
        missing.append("dbos.DBOS._sys_db (the system database of the DBOS instance)")
    lookup("dbos._sys_db", "SystemDatabase", "reenqueue_for_recovery")
    lookup("dbos._dbos", "queue_thread")
    table = lookup("dbos._schemas.system_database", "SystemSchema", "workflow_status")
    if table is not None:
        columns = set(getattr(getattr(table, "c", None), "keys", list)())
        missing += [f"dbos.workflow_status.{c}" for c in _STATUS_COLUMNS if c not in columns]
    missing += [f"dbos.error.{name}" for name in _ERROR_NAMES if _error_class(name) is _Absent]
    return missing


def check() -> None:
    """Raise IncompatibleDBOS if the installed DBOS lacks an internal this module uses."""
    missing = missing_internals()
    if missing:
        raise IncompatibleDBOS(
            f"the installed DBOS ({version()}) lacks what Tether relies on: "
            f"{', '.join(missing)}; install the DBOS version range Tether's pyproject.toml "
            "pins (pip install -e .)"
        )


# -- start and stop ------------------------------------------------------------------------


def migrate(url: str) -> None:
    """Create or upgrade DBOS's system tables (a synchronous database URL)."""
    DBOS.migrate(url)


def launch(
    *,
    execute: Execute,
    database_url: str,
    engine: sa.Engine | None,
    app_version: str,
    executor_id: str,
    poll_s: float,
    run_migrations: bool,
    queues: list[str] | None,
) -> None:
    """Configure and launch DBOS; it resumes this executor's PENDING workflows, whose body
    is `execute(task_id)`.

    :param database_url: the system database (a synchronous URL).
    :param engine: a SQLAlchemy engine DBOS writes through (the embedded SQLite file's
        single writer), or None for DBOS's own.
    :param app_version: the code version; PENDING workflows of another one are not resumed.
    :param poll_s: DBOS's notification polling interval.
    :param queues: the queues this process dequeues (None: DBOS's default).
    """
    global _execute
    _execute = execute
    DBOS(
        config={
            "name": "tether",
            "system_database_url": database_url,
            **({"system_database_engine": engine} if engine is not None else {}),
            "application_version": app_version,
            "executor_id": executor_id,
            "notification_listener_polling_interval_sec": poll_s,
            "log_level": "WARNING",
            "run_migrations": run_migrations,
        }
    )
    if queues is not None:
        DBOS.listen_queues(queues)
    _wrap_queue_thread()
    # Launched from the server's event loop, so DBOS runs recovered workflows on it.
    DBOS.launch()


def destroy() -> None:
    global _wake
    DBOS.destroy()
    _wake = None


# -- waking the queues -----------------------------------------------------------------------
#
# DBOS's queue threads look for queued workflows every `polling_interval_sec`, each look a
# few queries: at 50 ms an idle worker spent 11 % of a core on it (3 % at 1 s). A queue is
# polled seldom instead, and a worker is woken when there is something to take: a task was
# queued (the API process that queued it notifies every worker) or one of its own ended (a
# slot is free). The threads wait on one `threading.Event`, DBOS's signal to stop; its
# `wait` is replaced by one that also returns, unset, when woken.

_wake: Callable[[], None] | None = None
_wrapped = False


def wake_queues() -> None:
    """Have this process's queue threads look for queued workflows now (thread-safe; nothing
    if DBOS is not launched here)."""
    if _wake is not None:
        _wake()


def _wrap_queue_thread() -> None:
    global _wrapped
    if _wrapped:
        return
    dbos_module: Any = importlib.import_module("dbos._dbos")
    original = dbos_module.queue_thread

    def queue_thread(stop: threading.Event, dbos: Any) -> None:
        global _wake
        _wake = _wakeable(stop)
        original(stop, dbos)

    dbos_module.queue_thread = queue_thread
    _wrapped = True


def _wakeable(stop: threading.Event) -> Callable[[], None]:
    """Make `stop.wait(timeout)` also return (False) when the returned function is called,
    for each waiting thread, and for a thread that was not waiting, at its next wait. A
    thread's first wait returns at once: a worker that starts looks at its queues then."""
    cond: threading.Condition = vars(stop)["_cond"]  # what `stop.set()` notifies
    wakes = 0
    seen: dict[int, int] = {}  # thread -> the wakes it has answered

    def wait(timeout: float | None = None) -> bool:
        me = threading.get_ident()
        with cond:
            answered = seen.get(me, -1)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not stop.is_set() and wakes == answered:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                cond.wait(left)
            seen[me] = wakes
            return stop.is_set()

    def wake() -> None:
        nonlocal wakes
        with cond:
            wakes += 1
            cond.notify_all()

    stop.wait = wait  # type: ignore[method-assign]
    return wake


async def register_queue(name: str, *, concurrency: int | None = None, poll_s: float) -> None:
    """Create or update a queue (`concurrency`: at most so many of its workflows at once per
    worker; None, no limit)."""
    await DBOS.register_queue_async(
        name,
        worker_concurrency=concurrency,
        polling_interval_sec=poll_s,
        on_conflict="always_update",
    )


# -- workflows -----------------------------------------------------------------------------


async def start(task_id: str, queue: str | None = None) -> None:
    """Start a task's workflow (its id is the task's), here or through `queue`."""
    with SetWorkflowID(task_id):
        if queue is not None:
            await DBOS.enqueue_workflow_async(queue, _run_task, task_id)
        else:
            await DBOS.start_workflow_async(_run_task, task_id)


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow as DBOS records it."""

    id: str
    status: str  # PENDING, ENQUEUED, SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED
    executor_id: str | None
    app_version: str | None
    error: Any

    @property
    def ended(self) -> bool:
        return self.status in ENDED


ENDED = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})


def _workflow(status: Any) -> Workflow:
    return Workflow(
        status.workflow_id, status.status, status.executor_id, status.app_version, status.error
    )


async def status(workflow_id: str, *, strict: bool = False) -> Workflow | None:
    """A workflow's status (None when unknown, or unreadable unless strict), looked up in a
    fresh context: from inside a workflow DBOS would record the lookup as one of its steps,
    and a replay (whose lookups fall at other times) would no longer match."""
    try:
        found = await asyncio.create_task(
            DBOS.get_workflow_status_async(workflow_id), context=contextvars.Context()
        )
    except Exception:  # DBOS's errors, and the database's (a frozen worker's dead connection)
        if strict:
            raise
        return None
    return None if found is None else _workflow(found)


async def pending_of(executor_id: str) -> list[Workflow]:
    """The PENDING workflows of an executor."""
    found = await DBOS.list_workflows_async(status="PENDING", executor_id=executor_id)
    return [_workflow(wf) for wf in found]


async def cancel(workflow_ids: list[str]) -> None:
    """Cancel workflows, so that nothing resumes them (raises DurableError)."""
    await DBOS.cancel_workflows_async(workflow_ids)


async def reenqueue(workflow_id: str, dead: str, queue: str) -> bool:
    """Put a PENDING workflow of the dead executor back on a queue (on `queue` if it came
    from none), for a live worker to resume. False if it is no longer that executor's."""

    def run() -> bool:
        from dbos._dbos import _get_dbos_instance

        sys_db = _get_dbos_instance()._sys_db  # noqa: SLF001 - DBOS has no public re-enqueue
        return bool(sys_db.reenqueue_for_recovery(workflow_id, [dead], queue))

    return await asyncio.to_thread(run)


def pin_pending(conn: sa.Connection, executor_id: str, queue: str) -> None:
    """Before DBOS launches: this executor's PENDING workflows that came from no queue are
    recovered onto `queue` (DBOS would put them on its internal queue)."""
    if conn.exec_driver_sql("SELECT to_regclass('dbos.workflow_status')").scalar() is None:
        return  # DBOS has not created its tables yet: nothing ran here
    conn.exec_driver_sql(
        "UPDATE dbos.workflow_status SET queue_name = %s "
        "WHERE status = 'PENDING' AND executor_id = %s AND queue_name IS NULL",
        (queue, executor_id),
    )


# -- messages ------------------------------------------------------------------------------


async def send(workflow_id: str, message: Any, *, topic: str, idempotency_key: str) -> None:
    """Send a message to a workflow; it is kept until received (once per key)."""
    await DBOS.send_async(workflow_id, message, topic=topic, idempotency_key=idempotency_key)


async def recv(topic: str, timeout_s: float) -> Any:
    """Inside a workflow: the next message on `topic`, or None after `timeout_s`."""
    return await DBOS.recv_async(topic=topic, timeout_seconds=timeout_s)
