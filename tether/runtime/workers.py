"""Workers on one shared database: queues, heartbeats, and taking over a dead worker's work.

On Postgres a task is started by putting it on the `tether-tasks` DBOS queue; any worker
(`tether worker`, or `tether serve` without `--no-worker`) dequeues it, at most
`worker_concurrency` at a time. Its sub-agents start in the worker that runs it (no queue
between parent and child, so delegation costs no polling).

Every worker writes a heartbeat row. Each beat, one worker (whoever holds a Postgres
advisory lock for that moment: the leader) looks for workers whose heartbeat is stale and
hands their PENDING workflows back to the queues: top-level tasks to `tether-tasks`,
sub-agents to `tether-children`. A live worker dequeues each and DBOS replays it from its
last completed step. Each task moved gets a `task.moved` event saying from where and why.

An executor id belongs to one live process at a time (`ExecutorClaim`): DBOS knows a
worker's work by that name alone, so a second process under it would beat for the first,
and the work of whichever died would never be found stale.

A worker silent past the stale time (frozen, cut off) may have been taken for dead and its
tasks moved: the `Fence`, given to the runtime, keeps its copies of them from acting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tether.db.engine import Database, sync_url
from tether.db.schema import executors
from tether.errors import Conflict, NotFound, TaskMoved
from tether.events.log import Append
from tether.model import dumps
from tether.runtime import durable

if TYPE_CHECKING:
    from tether.runtime.engine import Runtime

log = logging.getLogger(__name__)

TASK_QUEUE = "tether-tasks"  # top-level tasks, per-worker concurrency
CHILD_QUEUE = "tether-children"  # sub-agents handed over from a dead worker
# Polled seldom: it only ever holds what a dead worker left (found seconds after the death
# anyway), and each poll is three queries. Polled as often as the tasks' queue, an idle
# worker spent 19-20% of a core instead of 14-16% (docs/benchmarks.md).
CHILD_POLL_S = 1.0
_LOOKUP_TRIES = 6  # a workflow's status, looked up for about 6 s
_LEADER_LOCK = 0x7E7E_0001  # the advisory lock whose holder looks for dead workers
_CLAIM_KEEPALIVE = (("idle", 10), ("interval", 5), ("count", 3))  # seconds, seconds, probes


class ExecutorClaim:
    """This process's hold on its executor id for as long as it lives: a Postgres session
    advisory lock, on a connection of its own, keyed by the id.

    A second live process under the same id cannot take it, and is refused at start. A
    process that dies (kill -9, a crash, a lost host) lets it go with its connection, so
    its replacement under the same id starts at once and resumes its work. A frozen process
    (SIGSTOP) keeps it until it is killed. Session locks need a session: not through a
    transaction-pooling proxy such as pgbouncer in transaction mode."""

    def __init__(self, url: str, executor_id: str) -> None:
        self.executor_id = executor_id
        digest = hashlib.sha256(b"tether-executor:" + executor_id.encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
        self._conn: sa.Connection | None = None

    def acquire(self) -> None:
        """Take the id, or raise `Conflict` if a live process holds it."""
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # A process that dies closes its connection; a host that is lost cannot, and
            # Postgres would hold its lock until the OS's keepalive gave up (2 h by
            # default). These end that session (and free the id) within about 25 s.
            for name, value in _CLAIM_KEEPALIVE:
                conn.exec_driver_sql(f"SET tcp_keepalives_{name} = {value}")
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({self.key})").scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            raise Conflict(
                f"executor id {self.executor_id!r} is in use by another live process on this "
                "database; give each process its own TETHER_EXECUTOR_ID (a process restarted "
                "under its old id starts once the old one has exited)"
            )
        self._conn = conn

    def holds(self) -> bool:
        """Whether this process still holds its id: its connection is alive, or it was lost
        (the database restarted, the network broke) and the id was taken again. False if
        another process took it meanwhile. Raises if the database cannot be reached."""
        if self._conn is not None:
            try:
                self._conn.exec_driver_sql("SELECT 1")
                return True
            except sa.exc.DBAPIError:
                self._conn.close()
                self._conn = None
        try:
            self.acquire()
        except Conflict:
            return False
        log.warning(
            "executor id %r: its connection was lost and the id taken again", self.executor_id
        )
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the lock goes with its session
            self._conn = None
        self._engine.dispose()


def queues(worker: bool) -> list[str]:
    """The queues a process dequeues: a worker Tether's, an API-only process none."""
    return [TASK_QUEUE, CHILD_QUEUE] if worker else []


async def register_queues(worker_concurrency: int | None, poll_s: float) -> None:
    await durable.register_queue(TASK_QUEUE, concurrency=worker_concurrency, poll_s=poll_s)
    await durable.register_queue(CHILD_QUEUE, poll_s=max(poll_s, CHILD_POLL_S))


def pin_own_children(conn: sa.Connection, executor_id: str) -> None:
    """Before DBOS launches: this worker's unfinished sub-agents are recovered onto the
    children's queue (DBOS would put a workflow that came from no queue on its internal
    queue, which API-only processes dequeue too)."""
    durable.pin_pending(conn, executor_id, CHILD_QUEUE)


class Fence:
    """On a shared database: whether a task running here is still this process's own.

    A worker's stale time (half the leader's, on a worker; None in an API-only process) and
    its last heartbeat: a worker silent for longer may have been taken for dead and its
    tasks moved. Until it knows, every step and child start checks that its task is still
    its own (`suspect`, then `check`)."""

    def __init__(self, executor_id: str, stale_s: float | None = None) -> None:
        self.executor_id = executor_id
        self.stale_s = stale_s
        self.beat_at = 0.0  # monotonic; 0 before the first beat
        self.waking = False  # set by the heartbeat while it stops what was moved

    def overdue(self) -> bool:
        """Whether the last heartbeat is older than the stale time."""
        return (
            bool(self.beat_at)
            and self.stale_s is not None
            and time.monotonic() - self.beat_at > self.stale_s
        )

    def suspect(self) -> bool:
        """Whether this worker may have been taken for dead: steps and child starts then
        `check` before they run (an in-memory test otherwise)."""
        return self.stale_s is not None and (
            self.waking or time.monotonic() - self.beat_at > self.stale_s
        )

    async def check(self, task_id: str) -> None:
        """Raise TaskMoved if this task was handed to another worker (this one was frozen
        or cut off past the stale time): its copy here must do nothing more."""
        if await self.moved_elsewhere(task_id):
            raise TaskMoved(f"task {task_id} moved to another worker; its copy here stops")

    async def moved_elsewhere(self, task_id: str) -> bool:
        """Whether this task was handed to another worker while it ran here (this worker was
        taken for dead). Its failure here is then not its outcome: a frozen worker waking up
        must not fail a task that another runs."""
        # A sub-agent run inside its parent moves with the nearest workflow above it. A
        # worker waking from a freeze may find its connections dead: the lookup is retried
        # for a while, since "not moved" would let it record the failure of a moved task.
        parts = task_id.split(".")
        status = None
        for attempt in range(_LOOKUP_TRIES):
            try:
                for i in range(len(parts), 0, -1):
                    status = await durable.status(".".join(parts[:i]), strict=True)
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


class Workers:
    """This worker's heartbeat, and (when it leads) the takeover of dead workers' work."""

    def __init__(
        self,
        db: Database,
        runtime: Runtime,
        fence: Fence,
        *,
        heartbeat_s: float,
        stale_s: float,
        claim: ExecutorClaim | None = None,
        on_claim_lost: Callable[[], None] | None = None,
    ) -> None:
        """
        :param fence: the runtime's fence; its heartbeat is this worker's.
        :param stale_s: a worker silent this long is taken for dead (its work moved).
        :param claim: this process's hold on its executor id, checked at every beat.
        :param on_claim_lost: called when another process took the id (this one stops).
        """
        self.db, self.runtime, self.fence = db, runtime, fence
        self.executor_id = fence.executor_id
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.claim, self.on_claim_lost = claim, on_claim_lost
        self.claim_lost = False
        self.started_at = time.time()
        self.moved = 0  # workflows this worker handed over (while it led)
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        """Write this worker's heartbeat. After a silence past the stale time (the process
        was frozen, or the database out of reach), first stop what was moved meanwhile;
        until then every step checks (`Runtime.suspect`)."""
        fence = self.fence
        silent = fence.overdue()
        if silent:
            fence.waking = True
        now, me = time.time(), self.executor_id

        def write(c: sa.Connection) -> None:
            updated = c.execute(
                sa.update(executors).where(executors.c.id == me).values(heartbeat_at=now)
            ).rowcount
            if not updated:
                c.execute(
                    sa.insert(executors).values(id=me, started_at=self.started_at, heartbeat_at=now)
                )

        await self.db.write(write)
        fence.beat_at = time.monotonic()
        if silent:
            try:
                await self.runtime.stop_moved()
            finally:
                fence.waking = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tether-worker-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                if self.claim is not None and not await asyncio.to_thread(self.claim.holds):
                    # Another process runs under this name now: beating for it, or handing
                    # its work over at the stop, would pass its live tasks off as ours.
                    self.claim_lost = True
                    log.error(
                        "executor id %r was taken by another process while this one's hold "
                        "on it was lost; stopping",
                        self.executor_id,
                    )
                    if self.on_claim_lost is not None:
                        self.on_claim_lost()
                    return
                await self.beat()
                for dead, started_at, last_beat in await self._stale_if_leader():
                    age = time.time() - last_beat
                    reason = (
                        f"worker {dead} shut down"
                        if last_beat == 0
                        else f"worker {dead} stopped sending heartbeats {age:.0f} s ago"
                    )
                    await self.take_over(dead, started_at, reason, last_beat)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker heartbeat failed")
            await asyncio.sleep(self.heartbeat_s)

    async def _stale_if_leader(self) -> list[tuple[str, float, float]]:
        """The workers whose heartbeat is stale, if this worker holds the leader lock now
        (an empty list otherwise): one worker at a time hands work over."""
        cut = time.time() - self.stale_s

        def read(c: sa.Connection) -> list[tuple[str, float, float]]:
            if not c.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_LEADER_LOCK})").scalar():
                return []
            q = sa.select(executors.c.id, executors.c.started_at, executors.c.heartbeat_at).where(
                executors.c.heartbeat_at < cut, executors.c.id != self.executor_id
            )
            return [(r.id, r.started_at, r.heartbeat_at) for r in c.execute(q)]

        return await self.db.write(read)

    async def hand_over_own(self) -> int:
        """At a clean stop (after this worker's coroutines have stopped): its unfinished
        tasks go back to the queues now, for the live workers, instead of after the stale
        time. A worker that comes back under this name finds nothing of its own to resume.
        Its heartbeat is then marked stale rather than removed: a workflow whose start was
        still being written as the worker stopped is moved by the leader at a later beat."""
        me = self.executor_id
        if self.claim_lost:
            return 0
        try:
            moved = await self.take_over(me, self.started_at, f"worker {me} shut down", 0.0)
            await self.db.write(
                lambda c: c.execute(
                    sa.update(executors).where(executors.c.id == me).values(heartbeat_at=0.0)
                )
            )
            return moved
        except Exception:
            log.exception("handing this worker's tasks over at shutdown failed")
            return 0

    async def take_over(self, dead: str, started_at: float, reason: str, last_beat: float) -> int:
        """Hand the PENDING workflows of a stopped worker to the queues and say so in each
        task's events. Once it has none left, forget it (unless it beat again since
        `last_beat`): until then every leader's beat looks again. Safe to repeat: DBOS
        re-enqueues a workflow only while the dead worker still owns it, and the events
        carry keys."""
        runtime = self.runtime
        pending = await durable.pending_of(dead)
        moved: list[Append] = []
        for wf in pending:
            try:
                task = await runtime.store.task_row(wf.id)
            except NotFound:
                continue  # not a Tether task
            if wf.app_version != runtime.app_version:
                await runtime.interrupt_elsewhere(
                    task, f"{reason}, and it ran another code version ({wf.app_version})"
                )
                continue
            if await durable.reenqueue(wf.id, dead, CHILD_QUEUE):
                moved.append(
                    Append(
                        task.session_id,
                        task.id,
                        task.parent_id,
                        "task.moved",
                        dumps({"from": dead, "by": self.executor_id, "reason": reason}),
                        # One per takeover: a worker taken for dead twice moves a task twice.
                        key=f"{task.id}:moved:{dead}:{last_beat or started_at!r}",
                    )
                )
        if moved:
            await runtime.log.append(*moved)
            await runtime.queued()
            self.moved += len(moved)
            log.warning("%s; moved %d of its tasks to the queues", reason, len(moved))
        if not pending:
            forget = sa.delete(executors).where(
                executors.c.id == dead, executors.c.heartbeat_at == last_beat
            )
            await self.db.write(lambda c: c.execute(forget))
        return len(moved)
