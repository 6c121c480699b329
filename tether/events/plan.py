"""What one batch of appends writes: seqs allocated session by session, the events, task
rows and steps, retention's pruning, each session's head and bytes, as a few statements
whatever the batch's size (statements.py writes their text)."""

from __future__ import annotations

from typing import Any

from tether.db.pg_writer import Stmt
from tether.db.schema import tasks
from tether.events.append import NEW_TASK_COLUMNS, Append
from tether.events.statements import LogSql
from tether.model import TERMINAL, Event, TaskStatus

_STATUS = tasks.c.status.name
_LAST_SEQ = tasks.c.last_seq.name
_CREATED_SEQ = tasks.c.created_seq.name
_SELECTED_SEQ = tasks.c.selected_seq.name
_INPUT = tasks.c.input.name
_STORED_TEXT = (tasks.c.result.name, tasks.c.error.name)  # task values counted as written


class Plan:
    """What one batch writes, gathered session by session, written in a few statements."""

    def __init__(self, sql: LogSql) -> None:
        self.sql = sql
        self.new_tasks: list[dict[str, Any]] = []
        self.steps: list[tuple[Any, ...]] = []
        self.replaced: list[tuple[Any, ...]] = []
        self.rows: list[tuple[Any, ...]] = []
        self.task_values: dict[str, dict[str, Any]] = {}
        self.sessions: list[dict[str, Any]] = []
        # session -> (old low, new head, its index in self.sessions, tasks that ended)
        self.retention_of: dict[str, tuple[int, int, int, list[str]]] = {}
        # session -> bytes this batch writes for it (its `used_bytes`: tether/quotas.py)
        self.written: dict[str, int] = {}

    def add(
        self,
        session_id: str,
        items: list[Append],
        head_low: tuple[int, int],
        seen: set[tuple[str, str]],
        status_of: dict[str | None, TaskStatus],
        now: float,
    ) -> list[Event]:
        head, low = head_low
        accepted: list[Append] = []
        for a in items:
            if a.chain is not None and a.chain.error is not None:
                a.error = a.chain.error  # an earlier append of its chain failed
                continue
            if a.key is not None and (session_id, a.key) in seen:
                continue
            if a.new_task is not None:
                # Creating a task that exists is a replay (its `task.created` may have been
                # pruned by retention): a no-op, never a constraint failure.
                if a.task_id in status_of:
                    continue
                # A task that has ended starts no children.
                if status_of.get(a.parent_task_id) in TERMINAL:
                    continue
                status_of[a.task_id] = TaskStatus(a.new_task[_STATUS])
            # Nothing is appended for a task after its terminal status (a straggler of a
            # cancelled task leaves no trace), nor for a task that does not exist (a child
            # whose creation was refused because its parent had ended).
            elif a.task_id is not None and status_of.get(a.task_id, TaskStatus.cancelled) in (
                TERMINAL
            ):
                continue
            if a.step is not None:
                n, name, output, replace = a.step
                (self.replaced if replace else self.steps).append(
                    (a.task_id, n, session_id, name, output)
                )
                self.written[session_id] = self.written.get(session_id, 0) + len(output)
                continue
            if a.key is not None:
                seen.add((session_id, a.key))
            if a.status is not None:
                status_of[a.task_id] = a.status
            accepted.append(a)
        if not accepted:
            return []
        new_tasks = [a.new_task for a in accepted if a.new_task is not None]
        self.new_tasks.extend(new_tasks)
        evs: list[Event] = []
        ended: list[str] = []
        written = 0
        for i, a in enumerate(accepted, start=head + 1):
            written += written_by(a)
            ev = Event(i, session_id, a.task_id, a.parent_task_id, a.type, a.data, now)
            a.event = ev
            evs.append(ev)
            self.rows.append(
                (session_id, i, a.task_id, a.parent_task_id, a.type, a.data, now, a.key)
            )
            if a.task_id is not None:
                values = self.task_values.setdefault(a.task_id, {})
                if a.task_values:
                    values.update(a.task_values)
                if a.status is not None:
                    values[_STATUS] = a.status.value
                    if a.status in TERMINAL:
                        ended.append(a.task_id)
                values[_LAST_SEQ] = i
                if a.new_task is not None:
                    values[_CREATED_SEQ] = i  # the turn order: see conversation.queue
            for turn in a.selects:
                self.task_values.setdefault(turn, {})[_SELECTED_SEQ] = i
        self.written[session_id] = self.written.get(session_id, 0) + written
        new_head = head + len(accepted)
        self.sessions.append(
            {"_id": session_id, "_head": new_head, "_low": low, "_tasks": len(new_tasks)}
        )
        self.retention_of[session_id] = (low, new_head, len(self.sessions) - 1, ended)
        return evs

    def statements(self, retention: int) -> list[Stmt]:
        """What the batch writes: a few executemany statements, whatever its size."""
        sql = self.sql
        out: list[Stmt] = []
        if self.new_tasks:
            out.append(
                sql.insert_tasks(
                    [tuple(t.get(c) for c in NEW_TASK_COLUMNS) for t in self.new_tasks]
                )
            )
        if self.rows:
            out.append(sql.insert_events(self.rows))
        if self.steps:
            out.append(sql.insert_steps(self.steps, replace=False))
        if self.replaced:
            out.append(sql.insert_steps(self.replaced, replace=True))
        # Task rows: one executemany per shape of change (progress, status, last seq only…).
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for task_id, values in self.task_values.items():
            cols = tuple(sorted(values))
            shapes.setdefault(cols, []).append((*(values[c] for c in cols), task_id))
        for cols, params in shapes.items():
            out.append(sql.update_tasks(cols, params))
        if retention:
            for session_id, (low, new_head, idx, ended) in self.retention_of.items():
                new_low = low
                if new_head - low > retention + max(100, retention // 10):
                    new_low = new_head - retention
                    out.extend(sql.prune(session_id, low, new_low))
                    self.sessions[idx]["_low"] = new_low
                if ended and new_low:
                    out.extend(sql.delete_ended(session_id, new_low, ended))
        if self.sessions:
            out.append(
                sql.advance_sessions(
                    [
                        (
                            x["_head"],
                            x["_low"],
                            x["_tasks"],
                            self.written.pop(x["_id"], 0),
                            x["_id"],
                        )
                        for x in self.sessions
                    ]
                )
            )
        if any(self.written.values()):  # a session that got only step records
            out.append(sql.add_used_bytes([(n, sid) for sid, n in self.written.items() if n]))
        return out


ROW_BYTES = 64  # what a stored event costs beyond its data (seq, ids, key, index entries)


def written_by(a: Append) -> int:
    """The bytes an append stores: its event, and the task input or result riding on it.
    (Retention's pruning is not subtracted: a session's count is what was written.)"""
    n = ROW_BYTES + len(a.data)
    if a.new_task is not None:
        n += len(a.new_task.get(_INPUT) or "")
    if a.task_values:
        for column in _STORED_TEXT:
            value = a.task_values.get(column)
            if isinstance(value, str):
                n += len(value)
    return n
