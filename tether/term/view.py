"""The live view `tether attach` and `tether run` draw: the task tree with per-status counts
and progress bars, the newest events in plain words, and the connection's state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tether.client import ConnectionState, EventOut
from tether.term.common import safe
from tether.term.state import SessionState, TaskState

STYLE = {
    "queued": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "interrupted": "yellow",
}
MARK = {
    "queued": "○",
    "running": "●",
    "completed": "✓",
    "failed": "✗",
    "cancelled": "■",
    "interrupted": "!",
}
SHOWN_CHILDREN = 8


def short(value: Any, n: int = 70) -> str:
    s = value if isinstance(value, str) else str(value)
    s = " ".join(safe(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def describe(ev: EventOut) -> str:
    """One line of plain words for an event (tether/web/static/describe.js, for a terminal)."""
    return short(_describe(ev), 160)


def _describe(ev: EventOut) -> str:
    d: dict[str, Any] = ev.data if isinstance(ev.data, dict) else {}
    match ev.type:
        case "task.created":
            return (
                f"{d.get('agent', 'a task')} handed to a sub-agent"
                if d.get("parent_id")
                else f"{d.get('agent', 'a task')} started"
            )
        case "task.status":
            status = d.get("status")
            if status == "failed":
                err = d.get("error")
                why = err.get("message") if isinstance(err, dict) else err
                return f"Failed: {short(why or 'no reason given')}"
            return {
                "running": "Started working",
                "completed": "Finished",
                "cancelled": "Stopped",
                "interrupted": "Interrupted",
            }.get(str(status), str(status))
        case "task.progress":
            return f"Progress {d.get('n')} of {d.get('m')}" if d.get("m") else "Progress"
        case "task.cancel_requested":
            return "Cancel requested"
        case "task.recovered":
            return "Resumed after a server restart"
        case "task.moved":
            return f"Moved to a live worker: {d.get('reason', 'its worker stopped')}"
        case "batch.started":
            return f"Working through {d.get('count')} items, {d.get('parallel')} at a time"
        case "batch.summary":
            failed = f", {d['failed']} failed" if d.get("failed") else ""
            return f"{d.get('succeeded')} of {d.get('count')} items succeeded{failed}"
        case "item.started":
            return f"Working on “{short(d.get('item'), 60)}”"
        case "item.result":
            return f"Result: {d.get('words')} word{'' if d.get('words') == 1 else 's'}"
        case "RUN_STARTED":
            return "Model turn started"
        case "RUN_FINISHED":
            return "Model turn finished"
        case "RUN_ERROR":
            return f"Model turn failed: {short(d.get('message', ''))}"
        case "TEXT_MESSAGE_END":
            return "Reply complete"
        case "TOOL_CALL_START":
            return f"Calling {d.get('toolCallName', 'a tool')}"
        case "TOOL_CALL_END":
            return "Tool call sent"
        case "TOOL_CALL_RESULT":
            return f"Tool answered: {short(d.get('content', ''), 60)}"
        case "model.retry":
            return f"The model was busy; retrying in {d.get('delay_s')} s"
        case "approval.requested":
            return f"Asks you to approve {d.get('tool', 'a tool call')}"
        case "approval.answered":
            return "Denied" if d.get("decision") == "deny" else "Approved"
    return ev.type


def connection(state: ConnectionState, now: float | None = None) -> Text:
    now = time.time() if now is None else now
    if state.kind == "live":
        return Text("● Live", style="green")
    if state.kind == "connecting":
        return Text("◌ Connecting…", style="cyan")
    due = "" if state.next_try_at is None else f" in {max(0, round(state.next_try_at - now))} s"
    why = f" ({short(state.reason, 80)})" if state.reason else ""
    if state.kind == "offline":
        return Text(f"○ Offline: trying again{due}{why}", style="red")
    if state.kind == "stopped":
        return Text(
            f"○ Not following: {state.reason}" if state.reason else "○ Stopped", style="dim"
        )
    return Text(f"◌ Reconnecting{due}{why}", style="yellow")


@dataclass(slots=True)
class Fit:
    """The screen a frame is drawn for: narrow screens drop ids and shorten bars; the rows
    left after the status line are shared by the tree and the newest events, so nothing
    the frame must say is cut off the bottom."""

    width: int = 100
    height: int = 40
    rows: int = 0  # left for tree lines

    @property
    def narrow(self) -> bool:
        return self.width < 80


def _line(t: TaskState, fit: Fit) -> Text:
    style = STYLE.get(t.status, "")
    line = Text.assemble((f"{MARK.get(t.status, '?')} ", style), (short(t.agent, 30), "bold"))
    # A sub-agent's id extends its parent's: its own part is enough beside the parent.
    own = t.id[len(t.parent_id) :] if t.parent_id and t.id.startswith(t.parent_id) else t.id
    if not fit.narrow or own != t.id:
        line.append(f" {short(own, 60)}", style="dim")
    line.append(f"  {t.status}", style=style)
    if t.error and t.status == "failed":
        line.append(f"  {short(t.error, 60)}", style="red")
    return line


def _node(t: TaskState, fit: Fit) -> RenderableType:
    """A task's line, with its progress bar when it reports n of m."""
    if not t.m:
        return _line(t, fit)
    bar = Table.grid(padding=(0, 1))
    width = 10 if fit.narrow else 24
    bar.add_row(
        _line(t, fit), ProgressBar(total=t.m, completed=t.n or 0, width=width), f"{t.n or 0}/{t.m}"
    )
    return bar


def _add_children(tree: Tree, t: TaskState, state: SessionState, fit: Fit) -> None:
    kids = [state.tasks[c] for c in t.children if c in state.tasks]
    if not kids:
        return
    under = [x for k in kids for x in state.subtree(k.id)]
    counts = state.counts(under)
    tree.add(
        Text(
            f"{len(under)} sub-agent{'s' if len(under) != 1 else ''}: "
            + " · ".join(f"{n} {s}" for s, n in counts.items()),
            style="dim",
        )
    )
    fit.rows -= 1
    # The ones worth a look: running first, then failed, then the others in order.
    ranked = sorted(kids, key=lambda k: (k.status != "running", k.status != "failed"))
    shown = 0
    for k in ranked[:SHOWN_CHILDREN]:
        if fit.rows <= 1:
            break
        fit.rows -= 1
        shown += 1
        _add_children(tree.add(_node(k, fit)), k, state, fit)
    if len(kids) > shown:
        tree.add(Text(f"… and {len(kids) - shown} more", style="dim"))
        fit.rows -= 1


def render(
    state: SessionState,
    roots: list[str],
    conn: ConnectionState,
    footer: str,
    *,
    polled: str | None = None,
    end: str | None = None,
    fit: Fit | None = None,
) -> RenderableType:
    """A frame: the status line first (a frame cut to the screen keeps it), the tree, the
    approvals waiting, and as many of the newest events as fit."""
    fit = fit or Fit(height=10_000)
    if end == "finished":
        ends = sorted({state.tasks[r].status for r in roots if r in state.tasks})
        status = Text(f"■ Finished: {', '.join(ends)}", style="bold")
    elif end == "detached":
        status = Text("■ Detached: the work goes on on the server", style="bold")
    else:
        status = connection(conn)
    if polled and end is None:
        status.append(f" · {polled}", style="dim")
    status.append(f" · seq {state.last_seq}" + (f" · {footer}" if footer else ""), style="dim")
    asks = [
        Text.assemble(
            ("? ", "bold magenta"),
            f"{short(a.get('tool', 'a tool'), 40)} waits for your approval: ",
            (short(f"tether approve {a.get('task_id')} {a.get('approvalId')}", 120), "bold"),
        )
        for a in state.pending.values()
    ]
    # Rows: the status line and the approvals; the newest events get a third of the rest.
    left = fit.height - 2 - 2 * len(asks)
    keep = min(len(state.events), max(0, (left - 4) // 3))
    fit.rows = left - (keep + 1 if keep else 0)
    parts: list[RenderableType] = [status]
    for rid in roots:
        t = state.tasks.get(rid)
        if t is None or fit.rows <= 0:
            continue
        tree = Tree(_node(t, fit), guide_style="dim")
        fit.rows -= 1
        _add_children(tree, t, state, fit)
        parts.append(tree)
    if len(parts) == 1:
        parts.append(Text("No tasks yet.", style="dim"))
    parts.extend(asks)
    if keep:
        table = Table.grid(padding=(0, 1))
        for ev in list(state.events)[-keep:]:
            who = state.tasks.get(ev.task_id or "")
            table.add_row(
                *(
                    []
                    if fit.narrow
                    else [Text(time.strftime("%H:%M:%S", time.localtime(ev.ts)), style="dim")]
                ),
                Text(f"#{ev.seq}", style="dim"),
                Text(short(who.agent, 20) if who else "session", style="bold"),
                Text(describe(ev)),
            )
        parts.append(Text("Newest events", style="bold underline"))
        parts.append(table)
    return Group(*parts)
