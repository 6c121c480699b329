"""The nouns: sessions, tasks and their statuses, and log events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tether.errors import InvalidJSON


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
# The same, as the strings stored in `tether_tasks.status` (for SQL `IN (...)`), and the rest.
TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in TERMINAL))
UNFINISHED_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in TaskStatus if not s.terminal))


# Nesting deeper than this is refused wherever JSON enters: request bodies, events, results.
MAX_JSON_DEPTH = 64

# Line terminators that JSON leaves raw but that line-splitting readers (SSE parsers built on
# `splitlines()`, JavaScript before ES2019) treat as line ends.
_LINE_BREAKERS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dumps(value: Any) -> str:
    """Compact JSON text that every reader can take back: no NaN or Infinity (JSON has
    none; a browser's JSON.parse throws on them), no lone surrogates (they cannot be stored
    as UTF-8), at most MAX_JSON_DEPTH levels, and U+0085/U+2028/U+2029 escaped.
    Raises InvalidJSON, in the caller, for anything else."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / Infinity, or a circular reference
        raise InvalidJSON(f"not representable as JSON: {exc}") from None
    except TypeError as exc:
        raise InvalidJSON(f"not representable as JSON: {exc}") from None
    except RecursionError:
        raise InvalidJSON(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJSON(
                "contains a lone surrogate (\\ud800-\\udfff without its pair); "
                "strings must be valid Unicode"
            ) from None
        text = escape_line_breakers(text)
    # Counting brackets (strings included) is a cheap bound; only a suspect value is walked.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise InvalidJSON(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return text


def dumps_within(value: Any, limit: int, what: str) -> str:
    """`dumps(value)`, refused (InvalidJSON) when its UTF-8 is larger than `limit` bytes."""
    text = dumps(value)
    # Four bytes per character at most: only a text that could be too large is encoded.
    if len(text) > limit // 4 and (size := len(text.encode())) > limit:
        raise InvalidJSON(
            f"{what} is {size} bytes; the limit is {limit} (TETHER_MAX_EVENT_BYTES): "
            "store large data elsewhere and record a reference"
        )
    return text


def escape_line_breakers(text: str) -> str:
    if "\u0085" in text or "\u2028" in text or "\u2029" in text:
        for raw, escaped in _LINE_BREAKERS.items():
            text = text.replace(raw, escaped)
    return text


def json_depth(value: Any, stop: int = MAX_JSON_DEPTH) -> int:
    """How deeply lists and objects nest in value (a scalar is 0); stops counting past stop."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list | tuple):
            continue
        d += 1
        if d > deepest:
            deepest = d
            if deepest > stop:
                return deepest
        stack.extend((item, d) for item in v)
    return deepest


# What an event costs besides its data (envelope, bookkeeping), wherever events are counted
# in bytes: a subscriber's backlog, a page of the log.
EVENT_OVERHEAD = 200


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def events_size(events: list[Event]) -> int:
    """About how many bytes these events take, for bounds (not exact)."""
    return sum(len(e.data) for e in events) + EVENT_OVERHEAD * len(events)


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
    # Its SSE frame, made once: the same event object goes to every live stream of its
    # session (a thousand streams on one session built the same frame a thousand times).
    _frame: str | None = field(default=None, init=False, repr=False, compare=False)

    def frame(self) -> str:
        """`id: <seq>` and `data: <JSON>`, as one SSE frame."""
        text = self._frame
        if text is None:
            text = self._frame = event_frame(self.seq, self.to_json())
        return text

    def to_json(self) -> str:
        return event_json(
            self.seq,
            dumps(self.session_id),
            dumps(self.task_id),
            dumps(self.parent_task_id),
            dumps(self.type),
            self.data,
            self.ts,
        )


def event_json(
    seq: int, session_id: str, task_id: str, parent_task_id: str, type: str, data: str, ts: float
) -> str:
    """An event's JSON from its fields, the strings among them given as JSON already (a
    page of events encodes each distinct task id and type once: `events.frames`)."""
    return (
        f'{{"seq":{seq},"session_id":{session_id},"task_id":{task_id},'
        f'"parent_task_id":{parent_task_id},"type":{type},"data":{data},"ts":{ts!r}}}'
    )


def event_frame(seq: int, json_text: str) -> str:
    """The SSE frame of an event's JSON: `id: <seq>` and `data: <JSON>`."""
    text = f"id: {seq}\ndata: {json_text}\n\n"
    # Data written before every value went through `dumps` may hold raw line breakers.
    return text if text.isascii() else escape_line_breakers(text)


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

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Task:
        """The one reading of a `tether_tasks` row: a row's `._mapping`, or the dict of a row
        about to be inserted (columns it lacks read as a new task's: queued, no progress,
        no result). JSON columns (input, result, error) are stored as text."""
        get = row.get
        return cls(
            id=row["id"],
            session_id=row["session_id"],
            parent_id=get("parent_id"),
            agent=row["agent"],
            input=_loads(get("input")),
            status=TaskStatus(get("status") or TaskStatus.queued),
            progress_n=get("progress_n"),
            progress_m=get("progress_m"),
            result=_loads(get("result")),
            error=_loads(get("error")),
            app_version=get("app_version"),
            created_at=row["created_at"],
            started_at=get("started_at"),
            ended_at=get("ended_at"),
            last_seq=get("last_seq") or 0,
        )


@dataclass(slots=True)
class Session:
    id: str
    owner: str
    title: str
    created_at: float
    head_seq: int
    low_seq: int
    task_count: int = 0
