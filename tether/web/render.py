"""The API's JSON: sessions, tasks, snapshots and pages of events, as the routes send them.

The shapes are the ones `web/schemas.py` documents. Big answers (a page of events, a brief
tree of ten thousand tasks) are written as text directly: stored JSON (an event's data, a
task's input) is spliced in as it is, never decoded and encoded again.
"""

from __future__ import annotations

import json
from typing import Any

from tether.events.reader import Page, Snapshot
from tether.model import Session, Task, dumps, escape_line_breakers

SNAPSHOT_MESSAGE = 300  # characters of a task's error message a snapshot keeps

_json_string = json.encoder.encode_basestring  # the C one: ensure_ascii=False, no copy


def session(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "created_at": s.created_at,
        "head_seq": s.head_seq,
        "first_seq": s.low_seq + 1,
    }


def task(t: Task) -> dict[str, Any]:
    return {
        "id": t.id,
        "session_id": t.session_id,
        "parent_id": t.parent_id,
        "agent": t.agent,
        "input": t.input,
        "status": t.status.value,
        "progress": None if t.progress_m is None else {"n": t.progress_n, "m": t.progress_m},
        "result": t.result,
        "error": t.error,
        "created_at": t.created_at,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "last_seq": t.last_seq,
        "children": t.children,
    }


def tree(tasks: list[Task]) -> list[dict[str, Any]]:
    """Nest tasks under their parents: roots in creation order, each with its children."""
    nodes = {t.id: {**task(t), "children": []} for t in tasks}
    roots: list[dict[str, Any]] = []
    for t in tasks:
        node = nodes[t.id]
        parent = nodes.get(t.parent_id) if t.parent_id else None
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def snapshot(snap: Snapshot) -> dict[str, Any]:
    """A stream's first frame (and a 410's `snapshot`): task summaries carry no input or
    result, and an error's message is cut at SNAPSHOT_MESSAGE characters."""
    s = snap.session
    out = [
        {
            "id": r.id,
            "session_id": s.id,
            "parent_id": r.parent_id,
            "agent": r.agent,
            "status": r.status,
            "progress": None if r.progress_m is None else {"n": r.progress_n, "m": r.progress_m},
            "error": _short_error(None if r.error is None else json.loads(r.error)),
            "created_at": r.created_at,
            "started_at": r.started_at,
            "ended_at": r.ended_at,
            "last_seq": r.last_seq,
            "children": [],
        }
        for r in snap.tasks
    ]
    by_id = {t["id"]: t for t in out}
    for t in out:
        if t["parent_id"] in by_id:
            by_id[t["parent_id"]]["children"].append(t["id"])
    return {
        "session_id": s.id,
        "heartbeat_s": snap.heartbeat_s,
        "head_seq": s.head_seq,
        "first_seq": s.low_seq + 1,
        "server_time": snap.server_time,
        "task_count": snap.task_count,
        "tasks_truncated": snap.task_count > len(out),
        "tasks": out,
    }


def snapshot_text(snap: Snapshot) -> str:
    return dumps(snapshot(snap))


def _short_error(error: Any) -> Any:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
        if len(message) > SNAPSHOT_MESSAGE:
            return {**error, "message": message[:SNAPSHOT_MESSAGE] + "…"}
    return error


def event_page(page: Page) -> str:
    """A page of the log: the events as the log keeps them (their data is JSON text)."""
    before = "" if page.next_before is None else f'"next_before":{page.next_before},'
    return (
        f'{{"session_id":{dumps(page.session_id)},"head_seq":{page.head_seq},'
        f'"first_seq":{page.first_seq},"next_after":{page.next_after},{before}'
        f'"more":{"true" if page.more else "false"},'
        f'"events":[{",".join(e.to_json() for e in page.events)}]}}'
    )


def _num(x: float | None) -> str:
    return "null" if x is None else repr(x)


def brief_tree(session_id: str, rows: list[Any]) -> str:
    """A session's task tree as JSON text from brief rows (`db.tasks.read_brief_rows`):
    results null, and inputs too when they were too big to read. The stored JSON of inputs
    and errors is spliced in as it is: this is on the path of every reload of a big
    session."""
    q = _json_string
    sid = q(session_id)
    heads: dict[str, str] = {}
    kids: dict[str | None, list[str]] = {}
    for tid, parent, agent, status, pn, pm, error, created, started, ended, last, inp in rows:
        progress = "null" if pm is None else f'{{"n":{pn},"m":{pm}}}'
        heads[tid] = (
            f'{{"id":{q(tid)},"session_id":{sid},"parent_id":'
            f'{"null" if parent is None else q(parent)},"agent":{q(agent)},'
            f'"input":{inp or "null"},"status":"{status}","progress":{progress},'
            f'"result":null,"error":{error or "null"},"created_at":{created!r},'
            f'"started_at":{_num(started)},"ended_at":{_num(ended)},"last_seq":{last},'
            f'"children":['
        )
        kids.setdefault(parent, []).append(tid)

    def text(tid: str) -> str:
        return heads[tid] + ",".join(text(k) for k in kids.get(tid, ())) + "]}"

    roots = [r[0] for r in rows if r[1] is None or r[1] not in heads]
    out = "[" + ",".join(text(t) for t in roots) + "]"
    return out if out.isascii() else escape_line_breakers(out)
