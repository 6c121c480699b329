"""Wiring: the database, the log, the hub and the runtime, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import signal

from tether import __version__, agents, quotas, workspace
from tether.auth import passwords
from tether.auth.authenticator import Authenticator
from tether.db.engine import Database, sync_url
from tether.db.store import Store
from tether.db.usage import usage_hook
from tether.events.frames import SharedReads
from tether.events.hub import MemoryHub
from tether.events.log import EventLog
from tether.events.mirror import Mirror
from tether.events.pg_notify import (
    PgListener,
    RemoteFeed,
    new_origin,
    notify_cancel,
    notify_commits,
    notify_queued,
    notify_signout,
)
from tether.llm import approvals, config, install
from tether.llm.defaults import default_agents
from tether.llm.installed import Installed
from tether.runtime import durable, workers
from tether.runtime.agent import load_agent_modules, registry
from tether.runtime.engine import Runtime
from tether.settings import Settings

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url)
        self.store = Store(self.db)
        self.log = EventLog(self.db, retention=settings.retention_events)
        # Search's rows commit with the events they point to.
        self.log.add_commit_hook(self.store.search.on_commit)
        # Each model call's usage, as a row written in the commit of its `model.usage` event.
        self.log.add_commit_hook(usage_hook(pg=not self.db.sqlite))
        self.hub = MemoryHub()
        self.reads = SharedReads(self.db)  # streams' catch-up pages
        # Stream starts served from memory: only where this process is the only writer.
        self.mirror: Mirror | None = None
        # On a shared database other processes commit too: their commits wake our streams,
        # and ours reach them through the same feed, which keeps the two in order.
        self.listener: PgListener | None = None
        if self.db.sqlite:
            self.mirror = self.log.mirror = Mirror(check=settings.mirror_check)
            self.log.add_listener(self.hub.publish)
        else:
            origin = new_origin()
            self.log.add_commit_hook(notify_commits(origin))
            feed = RemoteFeed(self.log, self.hub)
            self.log.add_listener(feed.on_commit)
            self.listener = PgListener(self.db.url, origin, self.hub, feed)
        self.registry = registry
        self.runtime: Runtime | None = None
        self.models: Installed | None = None
        self.workers: workers.Workers | None = None
        self.claim: workers.ExecutorClaim | None = None
        self.auth: Authenticator | None = None
        self.stopping = asyncio.Event()
        self.streams = quotas.StreamSlots(settings.max_streams_per_user)
        self._pruner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def claim_executor_id(self) -> None:
        """On a shared database: hold this process's executor id while it lives, or raise
        `Conflict` if another live process holds it (before anything else is started)."""
        if self.db.sqlite or self.claim is not None:
            return
        claim = workers.ExecutorClaim(self.db.url, self.settings.executor_id)
        claim.acquire()
        self.claim = claim

    async def start(self) -> None:
        # Before anything is done: a DBOS that lacks what durable.py relies on stops here.
        durable.check()
        await asyncio.to_thread(self.claim_executor_id)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        quotas.configure(self.settings)
        # The sign-in check's stand-in hash, made beside the rest of the start (argon2
        # releases the GIL), so that no sign-in pays for it.
        dummy = asyncio.ensure_future(asyncio.to_thread(passwords.warm))
        agents.register(self.registry)
        load_agent_modules(self.settings.agents)
        # Model agents: the agents file's, else a default assistant (a provider key or
        # TETHER_MODEL_URL in the environment), else the offline demo.
        if self.settings.agents_file is not None:
            model_agents = config.load(self.settings.agents_file)
        else:
            model_agents = default_agents(self.settings)
        self.models = install(model_agents, self.registry, self.store, self.settings.data_dir)
        # DBOS's system tables are set up under the same lock as ours (its launch only
        # checks them on a shared database): one process migrates, the others wait for it.
        await asyncio.to_thread(self.db.migrate, None if self.db.sqlite else self._migrate_dbos)
        # Workspaces an earlier version kept on this disk move into the database.
        await workspace.import_from_disk(self.db, self.settings.data_dir)
        if self.db.sqlite:
            data_dir, reserve = self.settings.data_dir, self.settings.disk_reserve_bytes
            await asyncio.to_thread(quotas.make_reserve, data_dir, reserve)
        self.auth = Authenticator(self.settings, self.db)
        self.auth.on_sign_in_ended.append(self.hub.end_sign_in)
        if self.listener is not None:
            self.listener.on_signout.append(self.auth.close_sign_in)
            self.auth.on_sign_in_ended_here.append(self._tell_signout)
        self.log.start()
        if self.listener is not None:
            self.listener.start()
        version = self.settings.app_version or self.registry.code_version(f"tether-{__version__}")
        fence: workers.Fence | None = None
        if self.listener is not None:
            # On a worker, half the stale time: a silence that long may end with this
            # worker's tasks moved (the leader's clock and ours differ by a commit or two).
            stale_s = self.settings.worker_stale_s / 2 if self.settings.worker else None
            fence = workers.Fence(self.settings.executor_id, stale_s)
        self.runtime = Runtime(
            self.store,
            self.log,
            self.registry,
            version,
            child_poll_s=self.settings.child_poll_s,
            max_event_bytes=self.settings.max_event_bytes,
            fence=fence,
            task_queue=None if fence is None else workers.TASK_QUEUE,
            broadcast_cancel=None if self.listener is None else self._broadcast_cancel,
            tell_queued=None if self.listener is None else self._tell_queued,
        )
        if self.listener is not None:
            self.listener.on_cancel.append(self.runtime.stop_running)
            if self.settings.worker:
                self.listener.on_queued.append(durable.wake_queues)
            self.listener.on_head.append(self.runtime.waiters.on_remote_commit)
            self.listener.on_relisten.append(self.runtime.waiters.wake_all)
        if fence is not None and self.settings.worker:
            self.workers = workers.Workers(
                self.db,
                self.runtime,
                fence,
                heartbeat_s=self.settings.worker_heartbeat_s,
                stale_s=self.settings.worker_stale_s,
                claim=self.claim,
                # The process stops as at SIGTERM (`tether serve` and `tether worker`
                # both stop cleanly on it), without handing over work not its own.
                on_claim_lost=lambda: signal.raise_signal(signal.SIGTERM),
            )
            # Seen alive before it runs anything: a crash from here on is noticed.
            await self.workers.beat()
            executor_id = self.settings.executor_id
            await self.db.write(lambda c: workers.pin_own_children(c, executor_id))
        durable.launch(
            execute=self.runtime.execute,
            database_url=sync_url(self.db.url),
            engine=self.db.writer if self.db.sqlite else None,
            app_version=version,
            executor_id=self.settings.executor_id,
            poll_s=self.settings.dbos_poll_s,
            run_migrations=self.db.sqlite,
            queues=None if fence is None else workers.queues(self.settings.worker),
        )
        if self.workers is not None:
            await workers.register_queues(
                self.settings.worker_concurrency, self.settings.queue_poll_s
            )
        await self.runtime.recover()
        if self.workers is not None:
            self.workers.start()
        await approvals.resend_answered(self.store)
        self._pruner = asyncio.create_task(self._prune_forever(), name="tether-auth-pruner")
        await dummy
        log.info("tether started (code version %s)", version)

    async def _broadcast_cancel(self, task_ids: list[str]) -> None:
        """The other processes stop these tasks' coroutines."""
        assert self.listener is not None
        origin = self.listener.origin
        await self.db.write(lambda conn: notify_cancel(conn, origin, task_ids))

    async def _tell_queued(self) -> None:
        """The workers look at the queue now, not at their next poll."""
        await self.db.write(notify_queued)

    def _migrate_dbos(self) -> None:
        durable.migrate(sync_url(self.db.url))

    def _tell_signout(self, auth_session_id: str, message: str) -> None:
        """The other processes close this sign-in's streams now, not at their heartbeat."""
        assert self.listener is not None
        origin, db = self.listener.origin, self.db
        task = asyncio.create_task(
            db.write(lambda c: notify_signout(c, origin, auth_session_id, message))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prune_forever(self) -> None:
        """Ended sign-ins and spent refresh tokens leave the database."""
        assert self.auth is not None
        while True:
            try:
                removed = await self.auth.store.prune()
                if self.auth.shared is not None:
                    await self.auth.shared.prune()
                if any(removed):
                    log.info("pruned %d ended sign-ins and %d refresh tokens", *removed)
            except Exception:
                log.exception("pruning sign-ins failed")
            await asyncio.sleep(self.settings.auth_prune_s)

    def begin_shutdown(self) -> None:
        """Tell open streams to send their retry hint and close (called on SIGTERM)."""
        self.stopping.set()
        self.hub.close_all()

    async def stop(self) -> None:
        self.begin_shutdown()
        if self._pruner is not None:
            self._pruner.cancel()
        if self.workers is not None:
            await self.workers.stop()
        if self.runtime is not None:
            await self.runtime.stop()
        if self.models is not None:
            await self.models.close()  # the model processes: after the turns have stopped
        if self.workers is not None:
            await self.workers.hand_over_own()
        await self.log.stop()
        if self.listener is not None:
            await self.listener.stop()
        durable.destroy()
        await self.db.close()
        if self.claim is not None:
            self.claim.release()
            self.claim = None
