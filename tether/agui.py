"""AG-UI runs over Tether's log: a conversation turn and its sub-agents, as AG-UI events.

An AG-UI run is one turn (a task) of a session (the thread). Its events are the turn's log
events and its sub-agents' (task ids `<turn>.<k>`), mapped one log event at a time by
`RunMap`, which folds over them from the turn's first event (`task.created`): the same log
gives the same frames, so a client that resumes from a frame's id gets exactly the frames
after it. A log event maps to no frame, one, or (to close what a cut-off model call or a
failed sub-agent left open) a few; frame `i` of `k` from seq N has the id `N.i`, the last
one plain `N`, so Last-Event-ID says which frames of a seq were seen.

The mapping (AG-UI 1.0, `ag-ui-protocol`):
- the turn's `task.created` → RUN_STARTED (the caller's threadId and runId); its own
  RUN_STARTED is not repeated; RUN_FINISHED / RUN_ERROR end the run; a turn that ended
  without either (cancelled, interrupted, crashed) ends with RUN_ERROR, `code` its status;
- TEXT_MESSAGE_*, TOOL_CALL_* and TOOL_CALL_RESULT pass through; a sub-agent's carry its
  `subagentRunId` (its task id);
- a sub-agent's `task.created` → SUBAGENT_STARTED; its RUN_STARTED / RUN_FINISHED (or
  RUN_ERROR) → STEP_STARTED / STEP_FINISHED (the step is named after its agent); its final
  status → SUBAGENT_FINISHED or SUBAGENT_ERROR;
- everything else of the run (approvals, status, waiting, superseded replies) → CUSTOM,
  named `tether.<type>`, its value the log event's data;
- in interrupt mode, the turn's `approval.requested` (with nothing open) ends the run:
  RUN_FINISHED with an `interrupt` outcome; the run that resumes it (`after`) is the same
  turn's events from that one on, opened by its own RUN_STARTED.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ag_ui import core as ag

from tether.errors import BadRequest
from tether.model import Event

PROTOCOL_VERSION = "1.0"
_PASS = frozenset(
    {
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
    }
)
_TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})
_CURSOR = re.compile(r"^([0-9]{1,18})(?:\.([0-9]{1,6}))?$")

Frame = dict[str, Any]  # one AG-UI event, as its JSON object


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """The last frame a client saw: seq N, and `part` (None: all of N's frames)."""

    seq: int
    part: int | None = None

    def wants(self, seq: int, index: int) -> bool:
        """Whether frame `index` of `seq` comes after this cursor."""
        if seq != self.seq:
            return seq > self.seq
        return self.part is not None and index > self.part


def parse_cursor(raw: str | None, name: str) -> Cursor | None:
    """A frame id (`N` or `N.i`) as sent back in Last-Event-ID (empty: none, as an
    EventSource sends before its first id); BadRequest otherwise."""
    if raw is None or not raw.strip():
        return None
    m = _CURSOR.match(raw.strip())
    if m is None:
        raise BadRequest(
            f"{name} must be the id of a frame this stream sent (N or N.i), got {raw!r}"
        )
    return Cursor(int(m.group(1)), None if m.group(2) is None else int(m.group(2)))


# What an approval interrupt's answer is: ResumeEntry.payload.
RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 2000},
    },
    "required": ["approve"],
}


def interrupt_id(turn: str, approval_id: str) -> str:
    """An approval's interrupt id: the turn and the approval, so a resume names both."""
    return f"{turn}/{approval_id}"


def frame_id(seq: int, index: int, count: int) -> str:
    return str(seq) if index == count - 1 else f"{seq}.{index}"


def _ag(event: ag.BaseEvent) -> Frame:
    out: Frame = event.model_dump(by_alias=True, exclude_none=True, mode="json")
    return out


@dataclass(slots=True)
class _Task:
    agent: str
    open: dict[str, str] = field(default_factory=dict)  # message / tool call id -> kind
    step: bool = False
    done: bool = False


@dataclass(slots=True)
class RunMap:
    """The AG-UI frames of one run, from its log events in seq order."""

    thread_id: str
    run_id: str
    turn: str
    # Interrupt mode: the turn's approvals end the run (RUN_FINISHED, outcome `interrupt`);
    # `after` (an interrupt id) makes this the run that continues from that interrupt.
    interrupts: bool = False
    after: str | None = None
    resumed: bool = False
    ended: bool = False
    session_id: str = ""
    started: bool = False
    tasks: dict[str, _Task] = field(default_factory=dict)

    def owns(self, task_id: str | None) -> bool:
        return task_id is not None and (task_id == self.turn or task_id.startswith(self.turn + "."))

    def frames(self, e: Event) -> list[Frame]:
        """What this log event of the run shows, as AG-UI events."""
        out = self._frames(e)
        if self.after is not None and not self.resumed:
            return []  # before the interrupt this run continues from: another run's
        return out

    def _frames(self, e: Event) -> list[Frame]:
        if self.ended or not self.owns(e.task_id):
            return []
        assert e.task_id is not None
        data = json.loads(e.data)
        if not isinstance(data, dict):
            data = {"value": data}
        if e.type == "task.created":
            self.tasks[e.task_id] = _Task(str(data.get("agent", "")))
            if e.task_id == self.turn:
                self.started = True
                return [self._run_started(e)]
            return [self._subagent_started(e, data)] if self.started else []
        if not self.started:  # the run's first events were pruned from the log
            return []
        task = self.tasks.setdefault(e.task_id, _Task(""))
        if e.task_id == self.turn:
            return self._turn(e, data, task)
        return self._subagent(e, data, task)

    def _run_started(self, e: Event) -> Frame:
        self.session_id = e.session_id
        return self._run_started_frame()

    def _run_started_frame(self) -> Frame:
        return _ag(
            ag.RunStartedEvent(
                thread_id=self.thread_id,
                run_id=self.run_id,
                protocol_version=PROTOCOL_VERSION,
                metadata={"tether": {"sessionId": self.session_id, "taskId": self.turn}},
            )
        )

    def _subagent_started(self, e: Event, data: dict[str, Any]) -> Frame:
        assert e.task_id is not None
        inp = data.get("input") if isinstance(data.get("input"), dict) else {}
        parent = e.parent_task_id
        text = inp.get("text") if isinstance(inp, dict) else None
        tool_call = inp.get("tool_call_id") if isinstance(inp, dict) else None
        return _ag(
            ag.SubagentStartedEvent(
                subagent_run_id=e.task_id,
                name=str(data.get("agent", "")),
                description=text[:500] if isinstance(text, str) and text else None,
                parent_subagent_run_id=parent if parent and parent != self.turn else None,
                parent_tool_call_id=tool_call if isinstance(tool_call, str) else None,
            )
        )

    def _passed(self, e: Event, data: dict[str, Any], task: _Task, sub: str | None) -> Frame:
        if e.type in ("TEXT_MESSAGE_START", "TEXT_MESSAGE_END"):
            key = str(data.get("messageId"))
            kind = "text"
        else:
            key = str(data.get("toolCallId"))
            kind = "tool"
        if e.type.endswith("_START"):
            task.open[key] = kind
        elif e.type.endswith("_END"):
            task.open.pop(key, None)
        out: Frame = {"type": e.type, **data}
        if sub is not None:
            out["subagentRunId"] = sub
        return out

    def _close(self, task: _Task, sub: str | None, only: set[str] | None = None) -> list[Frame]:
        """End what a task left open (a reply cut off, a task that stopped mid-reply)."""
        out: list[Frame] = []
        for key, kind in list(task.open.items()):
            if only is not None and key not in only:
                continue
            del task.open[key]
            end: ag.BaseEvent = (
                ag.TextMessageEndEvent(message_id=key, subagent_run_id=sub)
                if kind == "text"
                else ag.ToolCallEndEvent(tool_call_id=key, subagent_run_id=sub)
            )
            out.append(_ag(end))
        return out

    def _custom(self, e: Event, data: dict[str, Any], sub: str | None) -> Frame:
        return _ag(
            ag.CustomEvent(
                name=f"tether.{e.type}", value={**data, "taskId": e.task_id}, subagent_run_id=sub
            )
        )

    def _turn(self, e: Event, data: dict[str, Any], task: _Task) -> list[Frame]:
        if e.type in _PASS:
            return [self._passed(e, data, task, None)]
        if e.type == "RUN_STARTED":
            return []
        if e.type == "message.superseded":
            cut = {*data.get("messageIds", ()), *data.get("toolCallIds", ())}
            return [*self._close(task, None, cut), self._custom(e, data, None)]
        if e.type == "RUN_FINISHED":
            return [*self._close_all(), self._finish()]
        if e.type == "RUN_ERROR":
            return [self._error(str(data.get("message", "the run failed")), data.get("code"))]
        if e.type == "approval.requested" and self.interrupts and self._quiet():
            return self._interrupt(data)
        if e.type == "task.status" and data.get("status") in _TERMINAL:
            status = str(data["status"])
            if status == "completed":
                return [*self._close_all(), self._finish()]
            error = data.get("error")
            why = error.get("message") if isinstance(error, dict) else None
            return [self._error(str(why or f"the run was {status}"), status)]
        return [self._custom(e, data, None)]

    def _subagent(self, e: Event, data: dict[str, Any], task: _Task) -> list[Frame]:
        sub = e.task_id
        assert sub is not None
        if task.done:
            return []
        if e.type in _PASS:
            return [self._passed(e, data, task, sub)]
        if e.type == "RUN_STARTED":
            if task.step:  # a step is started once, whatever a replay wrote
                return []
            task.step = True
            return [
                _ag(ag.StepStartedEvent(step_name=task.agent or "sub-agent", subagent_run_id=sub))
            ]
        if e.type in ("RUN_FINISHED", "RUN_ERROR"):
            return self._end_step(task, sub)
        if e.type == "message.superseded":
            cut = {*data.get("messageIds", ()), *data.get("toolCallIds", ())}
            return [*self._close(task, sub, cut), self._custom(e, data, sub)]
        if e.type == "task.status" and data.get("status") in _TERMINAL:
            return self._end_subagent(sub, task, data)
        return [self._custom(e, data, sub)]

    def _end_step(self, task: _Task, sub: str) -> list[Frame]:
        out = self._close(task, sub)
        if task.step:
            task.step = False
            out.append(
                _ag(ag.StepFinishedEvent(step_name=task.agent or "sub-agent", subagent_run_id=sub))
            )
        return out

    def _end_subagent(self, sub: str, task: _Task, data: dict[str, Any]) -> list[Frame]:
        out = self._end_step(task, sub)
        task.done = True
        if data.get("status") == "completed":
            res = data.get("result")
            text = res.get("text") if isinstance(res, dict) else res
            out.append(_ag(ag.SubagentFinishedEvent(subagent_run_id=sub, result=text)))
        else:
            error = data.get("error")
            why = error.get("message") if isinstance(error, dict) else None
            message = str(why or f"the sub-agent was {data.get('status')}")
            out.append(
                _ag(
                    ag.SubagentErrorEvent(
                        subagent_run_id=sub, message=message, code=str(data.get("status"))
                    )
                )
            )
        return out

    def _quiet(self) -> bool:
        """Nothing open (a run can end here): no sub-agent, message or tool call."""
        return all(not t.open and (tid == self.turn or t.done) for tid, t in self.tasks.items())

    def _interrupt(self, data: dict[str, Any]) -> list[Frame]:
        iid = interrupt_id(self.turn, str(data.get("approvalId")))
        if self.after is not None and not self.resumed:
            if iid != self.after:
                return []  # an earlier run's interrupt
            self.resumed = True
            return [self._run_started_frame()]
        self.ended = True
        tool = str(data.get("tool", "a tool"))
        interrupt = ag.Interrupt(
            id=iid,
            reason="tool_approval",
            message=f"The agent asks to run {tool}: approve or deny.",
            tool_call_id=data.get("toolCallId"),
            response_schema=RESPONSE_SCHEMA,
            metadata={"tether": {k: v for k, v in data.items() if k != "toolCallId"}},
        )
        outcome = ag.RunFinishedInterruptOutcome(type="interrupt", interrupts=[interrupt])
        return [
            _ag(ag.RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, outcome=outcome))
        ]

    def _close_all(self) -> list[Frame]:
        """Before RUN_FINISHED: every sub-agent ended, every message and tool call closed
        (a well-behaved turn leaves nothing open; a crash might)."""
        out: list[Frame] = []
        for tid, task in self.tasks.items():
            if tid == self.turn:
                out += self._close(task, None)
            elif not task.done:
                out += self._end_subagent(tid, task, {"status": "cancelled"})
        return out

    def _finish(self) -> Frame:
        self.ended = True
        return _ag(ag.RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id))

    def _error(self, message: str, code: Any) -> Frame:
        self.ended = True
        return _ag(ag.RunErrorEvent(message=message, code=None if code is None else str(code)))
