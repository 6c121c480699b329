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


# Search, share links and usage: their routes write the JSON (tether/web/routes/search.py,
# shares.py, usage.py); the SDK reads it with these.


class SearchResult(BaseModel):
    session_id: str
    title: str = Field(description="The session's title now.")
    kind: Literal["title", "message", "reply", "tool", "task", "result"] = Field(
        description="What matched: the title, a message, a reply, a tool's result, a task's "
        "input or a task's result."
    )
    seq: int = Field(description="The event to open the session at (0 for a title).")
    task_id: str | None = Field(description="The turn or task it belongs to.")
    snippet: list[str] = Field(
        description="Plain text around the match, in pieces: the odd-numbered ones (1, 3, …) "
        "matched. Never markup: show each piece as text."
    )


class SearchPage(BaseModel):
    results: list[SearchResult]
    next: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class ShareOut(BaseModel):
    id: str
    label: str
    created_at: float
    expires_at: float | None = Field(description="When the link stops working; null: never.")
    expired: bool


class ShareMade(ShareOut):
    token: str = Field(description="The link's secret, shown this once (kept only hashed).")
    url: str = Field(description="The page, read-only, for whoever holds the link.")


class ShareList(BaseModel):
    shares: list[ShareOut]


class SharedSession(BaseModel):
    session_id: str
    label: str
    expires_at: float | None


class Totals(BaseModel):
    calls: int = Field(description="Model calls (attempts) that reported usage.")
    input_tokens: int = Field(description="Input tokens, cache reads and writes included.")
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost: float | None = Field(
        description="The cost of the calls whose agent has prices (null: none had)."
    )
    unpriced_calls: int = Field(description="Calls of unknown cost, not in `cost`.")


class SessionTotals(Totals):
    session_id: str
    title: str | None = Field(description="null: the session was deleted since.")


class ModelTotals(Totals):
    model: str


class UserBudget(BaseModel):
    limit: float | None = Field(description="`budget_user` (null: none).")
    spent: float = Field(description="This calendar month's known cost (UTC).")


class UsageOut(BaseModel):
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    total: Totals
    sessions: list[SessionTotals]
    models: list[ModelTotals]
    budget: UserBudget


class SessionUsage(BaseModel):
    session_id: str
    budget: float | None
    total: Totals
    turns: dict[str, Totals] = Field(description="By turn id: its calls, its sub-agents' too.")
    through_seq: int = Field(description="The seq of the last call counted here.")


class BudgetOut(BaseModel):
    session_id: str
    budget: float | None
