"""The export document: everything a session's log is, as one JSON value.

`{"format": "tether.session", "version": 1, "session": {...}, "tasks": [...],
"events": [...], "files": [...]}`: the events in seq order with their task ids, data and
time; the tasks (the tree: `parent_id`, a turn's `follows`, `selected_seq`, `created_seq`)
with their inputs, results and outcomes; the workspace's files. JSON values are embedded
as values, not as the text the database keeps, so the document reads as what it is.
Import (`importer.py`) rebuilds the same log from it.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import sqlalchemy as sa

from tether.db.schema import events, files, sessions, tasks
from tether.errors import NotFound

FORMAT = "tether.session"
VERSION = 1

# The task columns a document carries (its id and parent are mapped on import).
TASK_FIELDS = (
    "agent",
    "status",
    "progress_n",
    "progress_m",
    "created_at",
    "started_at",
    "ended_at",
    "last_seq",
    "follows",
    "selected_seq",
    "created_seq",
)
JSON_FIELDS = ("input", "result", "error")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def read(c: sa.Connection, session_id: str, owner: str) -> dict[str, Any]:
    """The owner's session as a document (NotFound for a missing one, or another's), read
    in one transaction: its events and tasks are of one moment."""
    s = c.execute(
        sa.select(sessions).where(sessions.c.id == session_id, sessions.c.owner == owner)
    ).first()
    if s is None:
        raise NotFound("session not found")
    task_rows = c.execute(
        sa.select(tasks)
        .where(tasks.c.session_id == session_id)
        .order_by(sa.func.coalesce(tasks.c.created_seq, 0), tasks.c.created_at, tasks.c.id)
    )
    out_tasks = [
        {
            "id": r.id,
            "parent_id": r.parent_id,
            **{k: getattr(r, k) for k in TASK_FIELDS},
            **{k: _loads(getattr(r, k)) for k in JSON_FIELDS},
        }
        for r in task_rows
    ]
    event_rows = c.execute(
        sa.select(
            events.c.seq,
            events.c.task_id,
            events.c.parent_task_id,
            events.c.type,
            events.c.data,
            events.c.ts,
            events.c.key,
        )
        .where(events.c.session_id == session_id)
        .order_by(events.c.seq)
    )
    out_events = [
        {
            "seq": seq,
            "task_id": task_id,
            "parent_task_id": parent,
            "type": type_,
            "data": json.loads(data),
            "ts": ts,
            "key": key,
        }
        for seq, task_id, parent, type_, data, ts, key in event_rows
    ]
    file_rows = c.execute(
        sa.select(files.c.path, files.c.data, files.c.updated_at)
        .where(files.c.session_id == session_id)
        .order_by(files.c.path)
    )
    out_files = [
        {
            "path": path,
            "size": len(data),
            "data_base64": base64.b64encode(bytes(data)).decode(),
            "updated_at": at,
        }
        for path, data, at in file_rows
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": time.time(),
        "session": {
            "id": s.id,
            "title": s.title,
            "created_at": s.created_at,
            "head_seq": s.head_seq,
            "low_seq": s.low_seq,
        },
        "tasks": out_tasks,
        "events": out_events,
        "files": out_files,
    }
