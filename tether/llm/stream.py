"""One model call's stream, as log events in AG-UI's vocabulary.

pydantic-ai's stream events (part start, delta, end) become `TEXT_MESSAGE_START/CONTENT/END`
and `TOOL_CALL_START/ARGS/END` (built with the `ag-ui-protocol` types; the event's type is
the log event's type, its camelCase fields the data). Deltas are coalesced: a part emits at
most one CONTENT/ARGS event per `interval` (20 a second by default), and everything buffered
is emitted at the part's end, so a fast model costs the log a bounded rate and a slow one is
shown as it comes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ag_ui import core as ag
from pydantic_ai.messages import (
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
)


class Emitter(Protocol):
    """Where a reply's events go: the task's log (`TaskContext`), or, in a model process,
    the pipe back to the server (`model_process.py`)."""

    def emit(self, type: str, data: Any = None) -> None: ...


def ag_event(event: ag.BaseEvent) -> tuple[str, dict[str, Any]]:
    data = event.model_dump(by_alias=True, exclude_none=True, mode="json")
    return str(data.pop("type")), data


def emit_ag(ctx: Emitter, event: ag.BaseEvent) -> None:
    ctx.emit(*ag_event(event))


@dataclass(slots=True)
class _Part:
    kind: str  # "text" or "tool"
    id: str
    buffer: list[str] = field(default_factory=list)
    last: float = 0.0
    timer: asyncio.TimerHandle | None = None


class ReplyStream:
    def __init__(self, ctx: Emitter, message_base: str, interval: float = 0.05) -> None:
        self.ctx = ctx
        self.base = message_base
        self.interval = interval
        self.parts: dict[int, _Part] = {}
        self.message_ids: list[str] = []
        self.tool_call_ids: list[str] = []

    def feed(self, event: Any) -> None:
        if isinstance(event, PartStartEvent):
            self._start(event.index, event.part)
        elif isinstance(event, PartDeltaEvent):
            part = self.parts.get(event.index)
            delta = event.delta
            if part is None:
                return
            if isinstance(delta, TextPartDelta) and part.kind == "text":
                self._add(part, delta.content_delta)
            elif isinstance(delta, ToolCallPartDelta) and part.kind == "tool":
                args = delta.args_delta
                if args:
                    self._add(part, args if isinstance(args, str) else _json(args))
        elif isinstance(event, PartEndEvent):
            self._end(event.index)

    def _start(self, index: int, part: Any) -> None:
        if index in self.parts:
            self._end(index)
        if isinstance(part, TextPart):
            p = _Part("text", f"{self.base}.{index}")
            self.message_ids.append(p.id)
            emit_ag(self.ctx, ag.TextMessageStartEvent(message_id=p.id, role="assistant"))
            self.parts[index] = p
            if part.content:
                self._add(p, part.content)
        elif isinstance(part, ToolCallPart):
            p = _Part("tool", part.tool_call_id)
            self.tool_call_ids.append(p.id)
            emit_ag(
                self.ctx,
                ag.ToolCallStartEvent(
                    tool_call_id=p.id, tool_call_name=part.tool_name, parent_message_id=self.base
                ),
            )
            self.parts[index] = p
            if part.args:
                self._add(p, part.args if isinstance(part.args, str) else _json(part.args))
        # Other parts (thinking, files) are not shown.

    def _add(self, part: _Part, text: str) -> None:
        if not text:
            return
        part.buffer.append(text)
        wait = part.last + self.interval - time.monotonic()
        if wait <= 0:
            self._flush(part)
        elif part.timer is None:
            part.timer = asyncio.get_running_loop().call_later(wait, self._flush, part)

    def _flush(self, part: _Part) -> None:
        if part.timer is not None:
            part.timer.cancel()
            part.timer = None
        if not part.buffer:
            return
        delta = "".join(part.buffer)
        part.buffer.clear()
        part.last = time.monotonic()
        if part.kind == "text":
            emit_ag(self.ctx, ag.TextMessageContentEvent(message_id=part.id, delta=delta))
        else:
            emit_ag(self.ctx, ag.ToolCallArgsEvent(tool_call_id=part.id, delta=delta))

    def _end(self, index: int) -> None:
        part = self.parts.pop(index, None)
        if part is None:
            return
        self._flush(part)
        if part.kind == "text":
            emit_ag(self.ctx, ag.TextMessageEndEvent(message_id=part.id))
        else:
            emit_ag(self.ctx, ag.ToolCallEndEvent(tool_call_id=part.id))

    def abort(self) -> None:
        """Stop every pending flush without emitting (the task is being cancelled)."""
        for part in self.parts.values():
            if part.timer is not None:
                part.timer.cancel()
                part.timer = None

    def close(self) -> None:
        """End every open part (the stream finished, or broke off: what was shown stays
        until a `message.superseded` replaces it)."""
        for index in list(self.parts):
            self._end(index)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))
