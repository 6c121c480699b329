"""What the terminal shows of a session, built from its stream: every task's status and
progress, the tree they make, the newest events, and the approvals waiting for an answer.

A snapshot (the stream's first frame, or a `Reset`'s) says each task's status; the events
after it move them on. While the stream is down, a status read from the server (`adopt`)
keeps the view true.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tether.client import EventOut, Snapshot

TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})
ORDER = ("running", "queued", "completed", "failed", "cancelled", "interrupted")


@dataclass(slots=True)
class TaskState:
    id: str
    agent: str
    parent_id: str | None
    status: str = "queued"
    n: int | None = None
    m: int | None = None
    error: str | None = None
    children: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(slots=True)
class SessionState:
    """One session as the terminal knows it. `events` keeps the newest `keep`."""

    session_id: str
    keep: int = 8
    tasks: dict[str, TaskState] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    events: deque[EventOut] = field(default_factory=deque)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # approval id -> request
    last_seq: int = 0

    def reset(self, snap: Snapshot) -> None:
        """Start over from a snapshot's statuses (the events after it follow)."""
        self.tasks.clear()
        self.roots.clear()
        self.events.clear()
        for t in snap.tasks:
            self._add(str(t["id"]), str(t["agent"]), t.get("parent_id"))
            task = self.tasks[str(t["id"])]
            task.status = str(t["status"])
            progress = t.get("progress") or {}
            task.n, task.m = progress.get("n"), progress.get("m")
            task.error = _message(t.get("error"))

    def adopt(self, task: Any) -> None:
        """A task as the server says it is now (a poll while the stream is down)."""
        known = self.tasks.get(task.id)
        if known is None:
            self._add(task.id, task.agent, task.parent_id)
            known = self.tasks[task.id]
        known.status = task.status
        if task.progress is not None:
            known.n, known.m = task.progress.n, task.progress.m
        known.error = _message(task.error)

    def apply(self, ev: EventOut) -> None:
        self.last_seq = max(self.last_seq, ev.seq)
        d = ev.data if isinstance(ev.data, dict) else {}
        tid = ev.task_id
        if ev.type == "task.created" and tid:
            self._add(tid, str(d.get("agent", "?")), d.get("parent_id") or ev.parent_task_id)
        task = self.tasks.get(tid) if tid else None
        if task is not None:
            if ev.type == "task.status":
                task.status = str(d.get("status", task.status))
                task.error = _message(d.get("error")) or task.error
            elif ev.type == "task.progress":
                task.n, task.m = d.get("n"), d.get("m")
        if ev.type == "approval.requested":
            self.pending[str(d.get("approvalId"))] = {**d, "task_id": tid}
        elif ev.type == "approval.answered":
            self.pending.pop(str(d.get("approvalId")), None)
        if tid and ev.type == "task.status" and str(d.get("status")) in TERMINAL:
            # (a task that ended answers no approval)
            for aid in [a for a, r in self.pending.items() if r.get("task_id") == tid]:
                del self.pending[aid]
        if ev.type not in _QUIET:
            self.events.append(ev)
            while len(self.events) > self.keep:
                self.events.popleft()

    def subtree(self, root: str) -> list[TaskState]:
        """The task and everything under it, parents first."""
        out, todo = [], [root]
        while todo:
            t = self.tasks.get(todo.pop())
            if t is not None:
                out.append(t)
                todo.extend(reversed(t.children))
        return out

    def counts(self, tasks: list[TaskState]) -> dict[str, int]:
        found: dict[str, int] = {}
        for t in tasks:
            found[t.status] = found.get(t.status, 0) + 1
        return {s: found[s] for s in ORDER if s in found}

    def _add(self, tid: str, agent: str, parent: Any) -> None:
        if tid in self.tasks:
            return
        parent_id = str(parent) if parent else None
        self.tasks[tid] = TaskState(tid, agent, parent_id)
        owner = self.tasks.get(parent_id) if parent_id else None
        if owner is not None:
            owner.children.append(tid)
        else:
            self.roots.append(tid)


# Token by token deltas and tool-call argument fragments: too many, too small to list.
_QUIET = frozenset({"TEXT_MESSAGE_CONTENT", "TOOL_CALL_ARGS", "TEXT_MESSAGE_START"})


def _message(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error)
    return str(error)
