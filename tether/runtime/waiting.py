"""Waiting for a task to end: a parent for its sub-agent, a task for another (`ctx.wait_for`).

A waiter is woken by the commit of the task's terminal status here, or (on a shared
database) by a notification that another process committed to the task's session, and then
reads the task's row again; a timeout is the backstop, after which a task whose workflow
ended without recording an outcome is settled (`settle_if_dead`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from tether.db.store import Store
from tether.model import TERMINAL, Event, Task, TaskStatus


class Waiters:
    """The tasks waited on in this process."""

    def __init__(
        self, store: Store, poll_s: float, settle_if_dead: Callable[[str], Awaitable[None]]
    ) -> None:
        """
        :param poll_s: how often a waiter reads the task again if nothing woke it.
        :param settle_if_dead: settles a task whose workflow ended without its outcome.
        """
        self._store = store
        self._poll_s = poll_s
        self._settle_if_dead = settle_if_dead
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._waiting_in: dict[str, set[str]] = {}  # session id -> task ids waited on here

    def on_commit(self, _session_id: str, events: list[Event]) -> None:
        """The log committed here: the waiters of a task that ended are woken."""
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

    def wake_all(self) -> None:
        """Every task waited on here is read again (notifications may have been missed)."""
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    async def wait_terminal(self, task_id: str) -> Task:
        """Wait until the task has ended (any way); returns it."""
        session_id: str | None = None
        try:
            while True:
                fut = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(task_id, []).append(fut)
                task = await self._store.task_row(task_id)
                if task.status.terminal:
                    return task
                if session_id is None:
                    session_id = task.session_id
                    self._waiting_in.setdefault(session_id, set()).add(task_id)
                try:
                    # Woken by a commit here or (on a shared database) a notification from
                    # another process; the timeout is the backstop.
                    await asyncio.wait_for(fut, self._poll_s)
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
