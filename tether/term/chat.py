"""`tether chat [SESSION]`: a conversation in the terminal. Each reply streams in as
markdown; tool calls and sub-agents show as lines of their own; an approval is asked
inline and answered from here. The reply is the server's, so a Ctrl-C (or a lost
connection) leaves it running: `tether chat SESSION` picks the conversation up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from tether.client import AsyncClient, Conflict, EventOut, EventStream
from tether.term.common import Exit, err, out, safe
from tether.term.state import TERMINAL
from tether.term.view import connection, short
from tether.web.schemas import ConversationOut, EventPage, TurnOut

HISTORY = 6  # turns of an earlier conversation shown when it is picked up


class Lines:
    """Lines typed on standard input, read without a thread (a Ctrl-C never waits for a
    line) and without making the terminal non-blocking (the output shares it)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.buf = b""
        self.eof = False

    async def read(self, prompt: str) -> str | None:
        out.print(prompt, end="", markup=False, highlight=False)
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf and not self.eof:
            ready = asyncio.Event()
            loop.add_reader(self.fd, ready.set)
            try:
                await ready.wait()
            finally:
                loop.remove_reader(self.fd)
            chunk = os.read(self.fd, 65536)
            self.buf += chunk
            self.eof = not chunk
        if not self.buf and self.eof:
            out.print()
            return None
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")


@dataclass(slots=True)
class Reply:
    """One turn's reply as it streams: text by message (a message cut off by a restart is
    dropped when the log says it was superseded), and the lines about tools and
    sub-agents, in the order they happened."""

    turn_id: str
    parts: list[tuple[str, str]] = field(
        default_factory=list
    )  # ("text", message id) | ("note", line)
    texts: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)  # tool call id -> name
    subtasks: dict[str, str] = field(default_factory=dict)  # task id -> agent
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # approval id -> request
    ended: set[str] = field(default_factory=set)  # message ids
    printed: int = 0  # parts printed for good
    told: bool = False
    status: str | None = None
    error: str | None = None

    def apply(self, ev: EventOut) -> None:
        d: dict[str, Any] = ev.data if isinstance(ev.data, dict) else {}
        if ev.type == "approval.requested" and ev.task_id in (self.turn_id, *self.subtasks):
            self.pending[str(d.get("approvalId"))] = {**d, "task_id": ev.task_id}
        elif ev.type == "approval.answered":
            asked = self.pending.pop(str(d.get("approvalId")), None)
            if asked is not None:
                verb = "denied" if d.get("decision") == "deny" else "approved"
                mark = "✗" if verb == "denied" else "✓"
                self.note(f"{mark} {asked.get('tool', 'the tool call')} {verb}")
        if ev.type == "task.created" and ev.parent_task_id in (self.turn_id, *self.subtasks):
            self.subtasks[str(ev.task_id)] = str(d.get("agent", "a sub-agent"))
            self.note(f"↳ handed to {d.get('agent', 'a sub-agent')}")
            return
        if ev.task_id in self.subtasks:
            if ev.type == "task.status" and d.get("status") in TERMINAL:
                self.note(f"↳ {self.subtasks[str(ev.task_id)]} {d.get('status')}")
            return
        if ev.task_id != self.turn_id:
            return
        if ev.type == "TEXT_MESSAGE_CONTENT":
            mid = str(d.get("messageId"))
            if mid not in self.texts:
                self.texts[mid] = ""
                self.parts.append(("text", mid))
            self.texts[mid] += str(d.get("delta", ""))
        elif ev.type == "TEXT_MESSAGE_END":
            self.ended.add(str(d.get("messageId")))
        elif ev.type == "message.superseded":
            for mid in d.get("messageIds") or []:
                self.texts.pop(str(mid), None)
            self.parts = [p for p in self.parts if p[0] != "text" or p[1] in self.texts]
            self.note("(the reply was cut off by a restart; it starts again)")
        elif ev.type == "TOOL_CALL_START":
            self.tools[str(d.get("toolCallId"))] = str(d.get("toolCallName", "a tool"))
            self.note(f"⚙ {d.get('toolCallName', 'a tool')}")
        elif ev.type == "TOOL_CALL_RESULT":
            name = self.tools.get(str(d.get("toolCallId")), "the tool")
            self.note(f"⚙ {name} answered: {short(d.get('content', ''), 100)}")
        elif ev.type == "model.retry":
            self.note(f"(the model is busy: trying again in {d.get('delay_s')} s)")
        elif ev.type == "task.status":
            self.status = str(d.get("status"))
            err_ = d.get("error")
            self.error = str(err_.get("message")) if isinstance(err_, dict) else None

    def note(self, line: str) -> None:
        self.parts.append(("note", short(line, 300)))

    def _part(self, kind: str, value: str, tail: tuple[int, int] | None = None) -> RenderableType:
        if kind == "note":
            return Text(value, style="dim")
        text = safe(self.texts[value])
        if tail is not None:  # (the end of a message too tall for the screen, as it streams)
            text = last_rows(text, *tail)
        return Markdown(text, hyperlinks=False)

    def settled(self) -> list[RenderableType]:
        """The parts that will not change any more (notes, and messages that ended), in
        order, each handed out once: they are printed for good, above the live part."""
        done: list[RenderableType] = []
        while self.printed < len(self.parts):
            kind, value = self.parts[self.printed]
            if kind == "text" and value not in self.ended and self.status not in TERMINAL:
                break
            done.append(self._part(kind, value))
            self.printed += 1
        if self.status in ("failed", "interrupted", "cancelled") and not self.told:
            self.told = True
            why = f": {safe(self.error)}" if self.error else ""
            done.append(Text(f"The reply {self.status}{why}", style="red"))
        return done

    def unsettled(self, height: int, width: int) -> RenderableType:
        """What is still streaming, cut to fit `height` lines (a live view taller than the
        screen cannot be redrawn in place)."""
        open_parts = self.parts[self.printed :]
        rows = max(1, height // max(1, len(open_parts)))
        return Group(*(self._part(k, v, (rows, width)) for k, v in open_parts))


def last_rows(text: str, rows: int, width: int) -> str:
    """The end of `text` that fills at most `rows` rows `width` wide, long lines wrapped."""
    kept: list[str] = []
    for line in reversed(text.split("\n")):
        need = max(1, -(-len(line) // max(1, width)))
        if need > rows:
            if rows > 0:
                kept.append(line[len(line) - rows * width :])
            break
        kept.append(line)
        rows -= need
    return "\n".join(reversed(kept))


def shown_branch(conv: ConversationOut) -> list[TurnOut]:
    """The branch the conversation shows: at each fork, the highest-ranked turn."""
    by_parent: dict[str | None, list[TurnOut]] = {}
    for t in conv.turns:
        by_parent.setdefault(t.parent, []).append(t)
    branch: list[TurnOut] = []
    at: str | None = None
    while by_parent.get(at):
        pick = max(by_parent[at], key=lambda t: t.rank)
        branch.append(pick)
        at = pick.id
    return branch


class Chat:
    def __init__(self, client: AsyncClient, session_id: str) -> None:
        self.client = client
        self.session_id = session_id
        self.lines = Lines()
        self.stream: EventStream | None = None
        self.queue: asyncio.Queue[EventOut] = asyncio.Queue()
        self.running: str | None = None  # the turn being shown

    async def run(self) -> int:
        conv = await self.client.http.model(
            ConversationOut, "GET", f"/api/sessions/{self.session_id}/conversation"
        )
        branch = shown_branch(conv)
        self.client.tokens.on_retry = None  # (reached: a reply says how its link is)
        for t in branch[-HISTORY:]:
            self._show_done(t)
        err.print(
            f"Session {self.session_id}. Type a message; /quit (or Ctrl-D) leaves. "
            "A reply keeps running on the server if you leave.",
            style="dim",
            markup=False,
        )
        self.stream = self.client.sessions.stream(self.session_id, after=conv.head_seq)
        pump = asyncio.create_task(self._pump(self.stream))
        try:
            unfinished = [t for t in branch if t.status in ("queued", "running")]
            if unfinished:
                # A reply still running: its events so far come again from its first seq.
                await self._follow(unfinished[-1].id, upto=conv.head_seq)
            while True:
                line = await self.lines.read("› ")
                if line is None or line.strip() in ("/quit", "/exit"):
                    return Exit.OK
                if not line.strip():
                    continue
                turn = await self.client.messages.send(self.session_id, line)
                await self._follow(turn.id)
        finally:
            pump.cancel()
            await self.stream.aclose()

    async def _pump(self, stream: EventStream) -> None:
        async for item in stream:
            if isinstance(item, EventOut):
                self.queue.put_nowait(item)

    def _show_done(self, t: TurnOut) -> None:
        if t.text is not None:
            out.print(Text.assemble(("you › ", "bold"), safe(t.text)))
        if t.reply:
            out.print(Markdown(safe(t.reply), hyperlinks=False))
        elif t.status in ("failed", "interrupted", "cancelled"):
            out.print(Text(f"The reply {t.status}: {safe(t.error or '')}", style="red"))

    async def _follow(self, turn_id: str, upto: int | None = None) -> None:
        """Show the turn's reply as it streams, until it ends; ask its approvals here.
        `upto`: the turn began before the stream, whose events come after this seq."""
        reply = Reply(turn_id)
        if upto is not None:
            await self._replay(reply, upto)
            for aid, request in list(reply.pending.items()):
                await self._ask(aid, request)
        self.running = turn_id
        live = Live(console=out, auto_refresh=False, transient=True) if out.is_terminal else None

        def show() -> None:
            for part in reply.settled():
                out.print(part)  # (above the live part, while there is one)
            if live is not None:
                view = reply.unsettled(max(2, out.height - 6), max(20, out.width - 4))
                if self.stream is not None and self.stream.state.kind != "live":
                    view = Group(view, connection(self.stream.state))
                live.update(view, refresh=True)

        try:
            with live or contextlib.nullcontext():
                while reply.status not in TERMINAL:
                    try:
                        ev = await asyncio.wait_for(self.queue.get(), 0.5)
                    except TimeoutError:
                        show()  # (the connection's state, while it is down)
                        continue
                    reply.apply(ev)
                    show()
                    aid = str((ev.data or {}).get("approvalId"))
                    if ev.type == "approval.requested" and aid in reply.pending:
                        if live is not None:
                            live.stop()
                        await self._ask(aid, reply.pending[aid])
                        if live is not None:
                            live.start()
                show()
        finally:
            self.running = None

    async def _replay(self, reply: Reply, upto: int) -> None:
        """The events of a reply that began before this chat did, up to `upto` (the
        stream has the ones after it)."""
        after = 0
        while True:
            page = await self.client.http.model(
                EventPage,
                "GET",
                f"/api/sessions/{self.session_id}/events",
                params={"task": reply.turn_id, "after": after, "before": upto + 1},
            )
            for ev in page.events:
                reply.apply(ev)
            if not page.more or not page.events:
                return
            after = page.next_after

    async def _ask(self, aid: str, request: dict[str, Any]) -> None:
        task_id, tool = str(request.get("task_id")), short(request.get("tool", "a tool"), 60)
        out.print(Text.assemble(("? ", "bold magenta"), (tool, "bold"), " asks to run with:"))
        args = request.get("args")
        for key, value in args.items() if isinstance(args, dict) else [("input", args)]:
            text = value if isinstance(value, str) else json.dumps(value)
            # (all of it, up to a screenful or two: it is what is being approved)
            cut = len(text) - 4000
            shown = text if cut <= 0 else f"{text[:4000]}… ({cut:,} more characters)"
            out.print(Text(f"    {short(key, 40)}: ", style="bold"), end="")
            out.print(Text(safe(shown).replace("\n", "\n      ")), markup=False)
        while True:
            line = await self.lines.read("  Approve? [y]es / [n]o, a note may follow: ")
            if line is None:
                out.print(f"  Left unanswered: `tether approve {task_id} {aid}` answers it.")
                return
            word, _, note = line.strip().partition(" ")
            if word.lower() in ("y", "yes", "n", "no"):
                decision = "approve" if word.lower().startswith("y") else "deny"
                try:
                    await self.client.approvals.answer(task_id, aid, decision, note or None)
                except Conflict:
                    out.print("  It was already answered elsewhere.", style="dim")
                return
