"""What the API answers, as models for the OpenAPI document.

The routes write their JSON themselves (one `json.dumps`, no per-field validation on the way
out: a session of ten thousand tasks must not cost a model round trip); these models say
what that JSON is, and the schemathesis run in the test suite holds the routes to them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.attachment_refs import Attachment

Status = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = Field(None, description="The failing fields (422).")
    snapshot: dict[str, Any] | None = Field(None, description="The current snapshot (410).")


class Progress(BaseModel):
    n: int
    m: int


class SessionOut(BaseModel):
    id: str
    title: str
    created_at: float
    head_seq: int = Field(description="The newest seq in the session's log.")
    first_seq: int = Field(description="The oldest seq still retained.")


class SessionListed(SessionOut):
    needs_you: int = Field(0, description="Approvals in this session waiting for an answer.")
    state: Literal["empty", "running", "completed", "failed", "cancelled", "interrupted"] = Field(
        "empty", description="running if a top-level task has not ended, else the latest's end."
    )
    tasks: int = Field(0, description="How many top-level tasks the session has.")


class SessionPage(BaseModel):
    sessions: list[SessionListed]
    next: str | None = Field(description="Pass as `before` for the next page; null at the end.")


class TaskOut(BaseModel):
    id: str
    session_id: str
    parent_id: str | None
    agent: str
    input: Any
    status: Status
    progress: Progress | None
    result: Any
    error: Any
    created_at: float
    started_at: float | None
    ended_at: float | None
    last_seq: int
    children: list[str] = Field(description="Ids of the direct children.")


class TurnOut(BaseModel):
    id: str
    parent: str | None = Field(description="The turn it follows (null: a first message).")
    regenerates: str | None = Field(description="The message it answers again (its node id).")
    rank: int = Field(description="At a fork, the turn with the highest rank is shown.")
    agent: str
    status: Status
    text: str | None = Field(
        description="The user's message (empty for a message of files alone; null when read brief)."
    )
    attachments: list[Attachment] = Field(description="The files the message carries.")
    reply: str | None = Field(description="The final reply's text, once completed.")
    error: str | None
    created_at: float
    ended_at: float | None
    last_seq: int


class ConversationOut(BaseModel):
    session_id: str
    head_seq: int
    turns: list[TurnOut] = Field(description="Every turn, oldest first (all branches).")


class Selected(BaseModel):
    turn: str = Field(description="The turn whose branch is shown now.")
    seq: int | None = Field(description="The `conversation.selected` event's seq.")


class TaskNode(TaskOut):
    children: list[TaskNode] = Field(description="The direct children, nested.")  # type: ignore[assignment]


class SessionDetail(SessionOut):
    tasks: list[TaskNode]


class TaskTree(BaseModel):
    session_id: str
    head_seq: int
    tasks: list[TaskNode]


class EventOut(BaseModel):
    seq: int
    session_id: str
    task_id: str | None
    parent_task_id: str | None
    type: str
    data: Any
    ts: float


class EventPage(BaseModel):
    session_id: str
    head_seq: int
    first_seq: int
    next_after: int = Field(description="Ask again with after=next_after.")
    more: bool = Field(description="Whether more events may follow right away.")
    next_before: int | None = Field(
        None, description="With `before`: ask again with before=next_before for older ones."
    )
    events: list[EventOut]


class AgentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str
    input_schema: dict[str, Any]
    internal: bool = Field(
        False, description="Runs only as a sub-agent: not offered as a thing to start."
    )
    kind: Literal["model"] | None = Field(None, description="Model agents say `model`.")
    model: str | None = None
    ready: bool | None = Field(None, description="Whether a model agent can call its model.")
    problem: str | None = Field(None, description="Why it cannot, and what to set.")


class Approval(BaseModel):
    id: str
    task_id: str
    session_id: str
    tool: str
    args: Any
    status: Literal["pending", "approved", "denied"]
    decision: Literal["approve", "deny"] | None
    note: str | None
    requested_at: float
    answered_at: float | None
    answered_by: str | None


class ApprovalList(BaseModel):
    approvals: list[Approval]


class AgentList(BaseModel):
    agents: list[AgentOut]


class UserOut(BaseModel):
    id: str
    name: str


class SignedIn(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_at: float
    expires_in: float
    user: UserOut


class Me(BaseModel):
    user: UserOut
    auth_session_id: str | None
    access_expires_at: float | None
    server_time: float


class Health(BaseModel):
    status: Literal["ok"]
