"""The nouns: sessions, tasks and their statuses, and log events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled, TaskStatus.interrupted}
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Event:
    """One committed log entry. `data` is kept as JSON text so it is encoded once, at append."""

    seq: int
    session_id: str
    task_id: str | None
    parent_task_id: str | None
    type: str
    data: str
    ts: float

    def to_json(self) -> str:
        return (
            f'{{"seq":{self.seq},"session_id":{dumps(self.session_id)},'
            f'"task_id":{dumps(self.task_id)},"parent_task_id":{dumps(self.parent_task_id)},'
            f'"type":{dumps(self.type)},"data":{self.data},"ts":{self.ts!r}}}'
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())


@dataclass(slots=True)
class Task:
    id: str
    session_id: str
    parent_id: str | None
    agent: str
    input: Any
    status: TaskStatus
    progress_n: int | None
    progress_m: int | None
    result: Any
    error: Any
    app_version: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    last_seq: int
    children: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "parent_id": self.parent_id,
            "agent": self.agent,
            "input": self.input,
            "status": self.status.value,
            "progress": (
                None if self.progress_m is None else {"n": self.progress_n, "m": self.progress_m}
            ),
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "last_seq": self.last_seq,
            "children": self.children,
        }


@dataclass(slots=True)
class Session:
    id: str
    owner: str
    title: str
    created_at: float
    head_seq: int
    low_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "head_seq": self.head_seq,
            "first_seq": self.low_seq + 1,
        }
