"""An export document brought back as a new session of the caller's, with the same log.

The same seqs, types, data, times and task tree; new ids where ids must be unique (the
session's, and every task's: a top-level task gets a fresh id and its sub-tasks keep their
place under it, `t_new.2.1` for `t_old.2.1`), mapped the same way wherever the document
names them (task rows, events, event keys, inputs and results). Nothing the document says
is trusted: it is checked whole before anything is written (no gap in the seqs, no task
whose parent is not in it, every value storable), and written in one transaction, so a
refused import leaves nothing behind. A task that had not ended when it was exported is
imported as `interrupted` (nothing runs it here).
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, field_validator

from tether.db.engine import Database
from tether.db.ids import new_id
from tether.db.schema import events, files, sessions, tasks
from tether.errors import InvalidInput, StorageQuotaExceeded
from tether.exports.document import FORMAT, VERSION
from tether.model import Event, TaskStatus, dumps, dumps_within
from tether.search import SearchIndex
from tether.search.extract import entries
from tether.workspace import PathRefused, normalize

INTERRUPTED = {"message": "imported before it had ended: nothing runs it here"}


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class SessionDoc(BaseModel):
    id: str | None = Field(None, max_length=64)
    title: str = Field("", max_length=200)
    head_seq: int = Field(ge=0, le=2**62)
    low_seq: int = Field(0, ge=0, le=2**62)


class TaskDoc(BaseModel):
    id: str = Field(min_length=1, max_length=255)
    parent_id: str | None = Field(None, max_length=255)
    agent: str = Field(min_length=1, max_length=128)
    status: TaskStatus
    progress_n: int | None = Field(None, ge=0, le=2**31 - 1)
    progress_m: int | None = Field(None, ge=0, le=2**31 - 1)
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    last_seq: int = Field(0, ge=0, le=2**62)
    follows: str | None = Field(None, max_length=255)
    selected_seq: int | None = Field(None, ge=0, le=2**62)
    created_seq: int | None = Field(None, ge=0, le=2**62)
    input: Any = None
    result: Any = None
    error: Any = None

    _times = field_validator("created_at", "started_at", "ended_at")(_finite)


class EventDoc(BaseModel):
    seq: int = Field(ge=1, le=2**62)
    task_id: str | None = Field(None, max_length=255)
    parent_task_id: str | None = Field(None, max_length=255)
    type: str = Field(min_length=1, max_length=128)
    data: Any = None
    ts: float
    key: str | None = Field(None, max_length=512)

    _ts = field_validator("ts")(_finite)


class FileDoc(BaseModel):
    path: str = Field(min_length=1, max_length=1024)
    data_base64: str
    updated_at: float

    _at = field_validator("updated_at")(_finite)


class Document(BaseModel):
    """A session's export (`GET /api/sessions/{id}/export?format=json`)."""

    format: Literal["tether.session"] = Field(description=f"Always {FORMAT!r}.")
    version: int = Field(description=f"This server reads version {VERSION}.")
    session: SessionDoc
    tasks: list[TaskDoc]
    events: list[EventDoc]
    files: list[FileDoc] = Field(default_factory=list)


def _ids(doc: Document) -> dict[str, str]:
    """Old task id -> new, each sub-task under its parent's new id. Refuses duplicate ids,
    parents the document lacks, and cycles."""
    by_id: dict[str, TaskDoc] = {}
    for t in doc.tasks:
        if t.id in by_id:
            raise InvalidInput(f"task {t.id!r} is in the document twice")
        by_id[t.id] = t
    new: dict[str, str] = {}

    def place(tid: str, seen: tuple[str, ...]) -> str:
        if tid in new:
            return new[tid]
        if tid in seen:
            raise InvalidInput(f"task {tid!r} is its own ancestor")
        parent = by_id[tid].parent_id
        if parent is None:
            new[tid] = new_id("t")
        elif parent not in by_id:
            raise InvalidInput(f"task {tid!r} names a parent the document lacks: {parent!r}")
        else:
            under = place(parent, (*seen, tid))
            suffix = tid[len(parent) :] if tid.startswith(parent + ".") else f".{len(new)}"
            new[tid] = under + suffix
        if len(new[tid]) > 255:
            raise InvalidInput(f"task {tid!r} is nested too deep to import")
        return new[tid]

    for t in doc.tasks:
        place(t.id, ())
    return new


class _Mapper:
    def __init__(self, ids: dict[str, str], old_session: str | None, session_id: str) -> None:
        self.ids = dict(ids)
        if old_session:
            self.ids.setdefault(old_session, session_id)

    def value(self, v: Any) -> Any:
        """The value with every id it names mapped (a string that is exactly an id)."""
        if isinstance(v, str):
            return self.ids.get(v, v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        return v

    def ref(self, tid: str | None, what: str) -> str | None:
        if tid is None:
            return None
        if tid not in self.ids:
            raise InvalidInput(f"{what} names a task the document lacks: {tid!r}")
        return self.ids[tid]

    def key(self, key: str | None) -> str | None:
        """An event's idempotency key: `{task}:…` keeps its task's new id."""
        if key is None:
            return None
        head, sep, rest = key.partition(":")
        mapped = self.ids[head] + sep + rest if sep and head in self.ids else key
        if len(mapped) > 512:
            raise InvalidInput(f"event key {key!r} is too long once its task id is mapped")
        return mapped


def _rows(
    doc: Document, session_id: str, max_event_bytes: int, now: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], int]:
    """The rows to write (tasks, events, files) and the bytes they count as, or
    InvalidInput naming the first thing wrong."""
    if doc.version != VERSION:
        raise InvalidInput(
            f"this is a version {doc.version} export; this server reads version {VERSION}"
        )
    low, head = doc.session.low_seq, doc.session.head_seq
    want = low + len(doc.events)
    if want != head:
        raise InvalidInput(f"the session's head_seq is {head}, but its events end at {want}")
    m = _Mapper(_ids(doc), doc.session.id, session_id)
    used = 0
    task_rows = []
    for t in doc.tasks:
        inp = dumps_within(m.value(t.input), max_event_bytes, f"task {t.id!r}'s input")
        result = None if t.result is None else dumps(m.value(t.result))
        error = None if t.error is None else dumps(m.value(t.error))
        status, ended = t.status.value, t.ended_at
        if not t.status.terminal:
            status, error, ended = TaskStatus.interrupted.value, dumps(INTERRUPTED), now
        if t.follows is not None and (t.follows not in m.ids or t.parent_id is not None):
            raise InvalidInput(f"task {t.id!r} follows a turn the document lacks")
        used += len(inp) + len(result or "")
        task_rows.append(
            {
                **t.model_dump(exclude={"input", "result", "error"}),
                "id": m.ids[t.id],
                "parent_id": m.ref(t.parent_id, f"task {t.id!r}"),
                "follows": m.ref(t.follows, f"task {t.id!r}"),
                "session_id": session_id,
                "input": inp,
                "result": result,
                "error": error,
                "status": status,
                "ended_at": ended,
            }
        )
    event_rows = []
    keys: set[str] = set()
    for i, e in enumerate(doc.events, start=low + 1):
        if e.seq != i:
            raise InvalidInput(f"the events' seqs must run {low + 1}, {low + 2}, … with no gap")
        key = m.key(e.key)
        if key is not None:
            if key in keys:
                raise InvalidInput(f"event {e.seq}'s key {e.key!r} is used twice")
            keys.add(key)
        data = dumps_within(m.value(e.data), max_event_bytes, f"event {e.seq}")
        used += len(data)
        event_rows.append(
            {
                "session_id": session_id,
                "seq": e.seq,
                "task_id": m.ref(e.task_id, f"event {e.seq}"),
                "parent_task_id": m.ref(e.parent_task_id, f"event {e.seq}"),
                "type": e.type,
                "data": data,
                "ts": e.ts,
                "key": key,
            }
        )
    file_rows = []
    paths: set[str] = set()
    for f in doc.files:
        try:
            path = normalize(f.path)
            content = base64.b64decode(f.data_base64, validate=True)
        except (PathRefused, binascii.Error) as exc:
            raise InvalidInput(f"file {f.path!r}: {exc}") from None
        if path in paths:
            raise InvalidInput(f"file {path!r} is in the document twice")
        paths.add(path)
        size = len(content)
        file_rows.append(
            {
                "session_id": session_id,
                "path": path,
                "size": size,
                "data": content,
                "updated_at": f.updated_at,
            }
        )
    return task_rows, event_rows, file_rows, used


def _event(row: dict[str, Any]) -> Event:
    names = ("seq", "session_id", "task_id", "parent_task_id", "type", "data", "ts")
    return Event(*(row[n] for n in names))


async def import_document(
    db: Database,
    doc: Document,
    owner: str,
    *,
    max_event_bytes: int,
    room: int | None,
    index: SearchIndex,
) -> str:
    """Write the document as a new session of `owner`'s; its id. `room`: how many bytes
    the owner may still store (None: no quota); an import larger is refused whole. Search
    finds it from the same transaction (`index`: its title and what its events said)."""
    session_id = new_id("s")
    now = time.time()
    task_rows, event_rows, file_rows, used = _rows(doc, session_id, max_event_bytes, now)
    stored = used + sum(f["size"] for f in file_rows)
    if room is not None and stored > room:
        raise StorageQuotaExceeded(
            f"this session takes {stored} bytes; your storage quota has {max(room, 0)} left "
            "(max_storage_bytes_per_user)"
        )

    def tx(c: sa.Connection) -> None:
        c.execute(
            sa.insert(sessions).values(
                id=session_id,
                owner=owner,
                title=doc.session.title,
                created_at=now,
                head_seq=doc.session.head_seq,
                low_seq=doc.session.low_seq,
                task_count=len(task_rows),
                used_bytes=used,
            )
        )
        for table, rows in ((tasks, task_rows), (events, event_rows), (files, file_rows)):
            for i in range(0, len(rows), 500):
                c.execute(sa.insert(table), rows[i : i + 500])
        index.set_title(c, session_id, doc.session.title)
        index.write(c, entries(session_id, [_event(r) for r in event_rows]))

    await db.write(tx)
    return session_id
