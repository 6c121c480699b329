"""Which events search finds, and the text of each: the rows one commit of the log adds to
the index.

- `task.created`: a chat message (a turn's input `{"text", ...}`, with the names of the
  files it carries) as `message`; any other task's input (a sub-agent's task, a batch's
  items) as `task`.
- `task.status` completed: a model agent's finished reply (its result's `text`) as
  `reply`, once, never the streamed deltas; any other task's result as `result`.
- `TOOL_CALL_RESULT`: a tool's result as `tool`.

A session's title is a row of its own (`title`, seq 0), written where the session is
created or renamed (db/sessions.py)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from tether.model import Event
from tether.search.text import clean, strings

KINDS = ("title", "message", "reply", "tool", "task", "result")
TYPES = frozenset({"task.created", "task.status", "TOOL_CALL_RESULT"})


class Entry(NamedTuple):
    """One row of the index: where it points (session, seq, task) and what it says."""

    session_id: str
    seq: int
    task_id: str | None
    kind: str
    body: str


def entries(session_id: str, events: list[Event]) -> list[Entry]:
    """The rows for these events of one session (most events add none)."""
    out: list[Entry] = []
    for ev in events:
        if ev.type not in TYPES:
            continue
        found = _entry(ev.type, ev.data)
        if found is not None and found[1].strip():
            out.append(Entry(session_id, ev.seq, ev.task_id, *found))
    return out


def _entry(type: str, raw: str) -> tuple[str, str] | None:
    if type == "task.status" and '"completed"' not in raw[:64]:
        return None  # the cheap test first: most status events are not a completion
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if type == "TOOL_CALL_RESULT":
        content = data.get("content")
        return ("tool", clean(content)) if isinstance(content, str) else None
    if type == "task.created":
        inp = data.get("input")
        kind, body = _texty("message", "task", inp)
        return (kind, _with_files(body, inp)) if kind == "message" else (kind, body)
    if data.get("status") != "completed" or "result" not in data:
        return None
    return _texty("reply", "result", data["result"])


def _with_files(text: str, inp: Any) -> str:
    """A message's text and the names of the files it carried: found by either (a message
    of files alone has no other words)."""
    found = inp.get("attachments") if isinstance(inp, dict) else None
    files = found if isinstance(found, list) else []
    names = [a["name"] for a in files if isinstance(a, dict) and isinstance(a.get("name"), str)]
    return clean("\n".join([text, *names]).strip()) if names else text


def _texty(said: str, other: str, value: Any) -> tuple[str, str]:
    """A value of the chat's shape (`{"text": ...}`) as what was said, else its strings."""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return said, clean(value["text"])
    return other, strings(value)
