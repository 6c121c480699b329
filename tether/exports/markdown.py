"""A session as Markdown, from its export document (`document.py`).

A conversation is written as it reads on the page: the branch shown, oldest turn first,
each user message and then the reply, with its tool calls one line each (the result cut
short) and each sub-agent's work nested, as a quote, under the call that delegated it. A
session that is not a conversation (a batch, say) is written as its task tree: each task's
status, input and result, its sub-tasks indented beneath it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from tether.llm.conversation import TurnRef, branch, tip
from tether.model import TaskStatus

TOOL_RESULT_CHARS = 160
ARGS_CHARS = 120
RESULT_CHARS = 2000
_ENDS = {
    "cancelled": "_Stopped._",
    "interrupted": "_Interrupted (the server's code changed while it ran)._",
    "queued": "_Not started yet._",
    "running": "_Still running when exported._",
}


def short(value: Any, n: int) -> str:
    """One line of at most n characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _quote(lines: Iterable[str]) -> list[str]:
    out = list(lines)
    while out and not out[-1]:
        out.pop()
    return [f"> {line}" if line else ">" for line in out]


class _Doc:
    """The document's tasks and events, looked up by task."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.tasks: dict[str, dict[str, Any]] = {t["id"]: t for t in doc["tasks"]}
        self.children: dict[str | None, list[dict[str, Any]]] = {}
        for t in doc["tasks"]:
            self.children.setdefault(t["parent_id"], []).append(t)
        self.events: dict[str | None, list[dict[str, Any]]] = {}
        for e in doc["events"]:
            self.events.setdefault(e["task_id"], []).append(e)

    def turns(self) -> list[dict[str, Any]]:
        """The branch shown of the conversation (empty: the session is not one)."""
        top = [t for t in self.children.get(None, []) if t.get("selected_seq") is not None]
        refs = [
            TurnRef(t["id"], t.get("follows"), t["selected_seq"], i, TaskStatus(t["status"]))
            for i, t in enumerate(top)
        ]
        return [self.tasks[tid] for tid in branch(refs, tip(refs))]

    def reply(self, task: dict[str, Any]) -> list[str]:
        """What a model agent's task showed, in order: its text, a line per tool call (the
        sub-agent a delegation started nested under it), and how it ended."""
        texts: dict[str, str] = {}
        calls: dict[str, dict[str, Any]] = {}
        order: list[tuple[str, str]] = []
        for e in self.events.get(task["id"], []):
            d = e["data"] if isinstance(e["data"], dict) else {}
            kind = e["type"]
            if kind == "TEXT_MESSAGE_CONTENT":
                mid = str(d.get("messageId"))
                if mid not in texts:
                    texts[mid] = ""
                    order.append(("text", mid))
                texts[mid] += str(d.get("delta", ""))
            elif kind == "TOOL_CALL_START":
                cid = str(d.get("toolCallId"))
                calls[cid] = {"name": str(d.get("toolCallName", "tool")), "args": ""}
                order.append(("call", cid))
            elif kind == "TOOL_CALL_ARGS" and str(d.get("toolCallId")) in calls:
                calls[str(d.get("toolCallId"))]["args"] += str(d.get("delta", ""))
            elif kind == "TOOL_CALL_RESULT" and str(d.get("toolCallId")) in calls:
                calls[str(d.get("toolCallId"))]["result"] = d.get("content", "")
            elif kind == "message.superseded":  # cut off by a crash and written again
                gone = {*map(str, d.get("messageIds") or []), *map(str, d.get("toolCallIds") or [])}
                order = [p for p in order if p[1] not in gone]
        by_call = {
            str((c.get("input") or {}).get("tool_call_id")): c
            for c in self.children.get(task["id"], [])
            if isinstance(c.get("input"), dict)
        }
        out: list[str] = []
        for kind, pid in order:
            if kind == "text":
                out += [texts[pid], ""]
                continue
            call = calls[pid]
            child = by_call.pop(pid, None)
            if call["name"] == "delegate" and child is not None:
                out += self._delegated(child) + [""]
            else:
                out += [_call_line(call), ""]
        for child in by_call.values():  # started otherwise than by a call seen above
            out += self._delegated(child) + [""]
        out += _ending(task)
        return out

    def _delegated(self, child: dict[str, Any]) -> list[str]:
        inp = child.get("input")
        asked = inp.get("text") if isinstance(inp, dict) else None
        if asked is None:  # not a model agent: its tree
            return _quote(self.tree(child, 0))
        head = f"**Sub-agent {child['agent']}** ({child['status']}): {short(asked, 300)}"
        body = self.reply(child)
        return _quote([head, "", *body])

    def tree(self, task: dict[str, Any], depth: int) -> list[str]:
        """A task that is not a turn: its status, input and result, its sub-tasks below."""
        pad = "  " * depth
        line = f"{pad}- **{task['agent']}** · {task['status']}"
        inp = task.get("input")
        if inp not in (None, {}, []):
            line += f" · input: `{short(inp, ARGS_CHARS)}`"
        if task.get("error") is not None:
            line += f" · error: {short(_error(task['error']), RESULT_CHARS)}"
        elif task.get("result") is not None:
            line += f" → `{short(task['result'], TOOL_RESULT_CHARS)}`"
        out = [line]
        for child in self.children.get(task["id"], []):
            out += self.tree(child, depth + 1)
        return out


def _error(error: Any) -> str:
    return str(error.get("message") or error) if isinstance(error, dict) else str(error)


def _ending(task: dict[str, Any]) -> list[str]:
    status = task["status"]
    if status == "failed":
        return [f"_Failed: {short(_error(task.get('error')), RESULT_CHARS)}_", ""]
    return [_ENDS[status], ""] if status in _ENDS else []


def _call_line(call: dict[str, Any]) -> str:
    try:
        args = json.loads(call["args"]) if call["args"] else {}
    except ValueError:
        args = call["args"]
    if isinstance(args, dict):
        shown = ", ".join(f"{k}={short(v, 60)}" for k, v in args.items())
    else:
        shown = short(args, ARGS_CHARS)
    line = f"- Tool `{call['name']}`({short(shown, ARGS_CHARS)})"
    if "result" in call:
        line += f" → {short(call['result'], TOOL_RESULT_CHARS)}"
    return line


def _attachments(inp: dict[str, Any]) -> list[str]:
    found = inp.get("attachments")
    if not isinstance(found, list) or not found:
        return []
    out = ["Attachments:", ""]
    for a in found:
        if isinstance(a, dict):
            size = f", {_size(int(a['size']))}" if isinstance(a.get("size"), int) else ""
            kind = f", {a['media_type']}" if a.get("media_type") else ""
            out.append(f"- `{a.get('name') or a.get('path')}` ({a.get('path', '')}{size}{kind})")
    return out + [""]


def render(doc: dict[str, Any]) -> str:
    """The document as Markdown."""
    d = _Doc(doc)
    s = doc["session"]
    out = [
        f"# {s['title'] or 'Untitled session'}",
        "",
        f"_Exported from Tether on {when(doc.get('exported_at'))}._",
        "",
    ]
    turns = d.turns()
    for turn in turns:
        raw = turn.get("input")
        inp: dict[str, Any] = raw if isinstance(raw, dict) else {}
        said = str(inp.get("text", ""))
        out += [f"## You · {when(turn['created_at'])}", ""] + ([said, ""] if said else [])
        out += _attachments(inp)
        out += [f"## {turn['agent']} · {when(turn.get('ended_at') or turn['created_at'])}", ""]
        out += d.reply(turn)
    in_chat = {t["id"] for t in d.children.get(None, []) if t.get("selected_seq") is not None}
    others = [t for t in d.children.get(None, []) if t["id"] not in in_chat]
    if others:
        out += ["## Tasks" if not turns else "## Other tasks", ""]
        for task in others:
            out += d.tree(task, 0)
        out.append("")
    if not turns and not others:
        out += ["_Nothing has happened in this session yet._", ""]
    return "\n".join(out).rstrip("\n") + "\n"
