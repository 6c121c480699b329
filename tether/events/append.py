"""What a caller hands the log: an `Append` (one event and the task-row changes riding on
it), and the `Chain` that makes a task's appends commit as a prefix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.db.schema import tasks
from tether.model import Event, TaskStatus

# The columns of a new task row (`runtime.children.new_task_row` makes exactly these).
NEW_TASK_COLUMNS: tuple[str, ...] = tuple(
    c.name
    for c in (
        tasks.c.id,
        tasks.c.session_id,
        tasks.c.parent_id,
        tasks.c.agent,
        tasks.c.input,
        tasks.c.status,
        tasks.c.app_version,
        tasks.c.created_at,
        tasks.c.follows,
        tasks.c.request_hash,
    )
)
_NEW_TASK_SET = frozenset(NEW_TASK_COLUMNS)

# The task-row columns an append may change. Anything else is a caller's bug, refused at
# submit, not a failed transaction that other callers' events share.
TASK_COLUMNS = frozenset(
    c.name
    for c in (
        tasks.c.progress_n,
        tasks.c.progress_m,
        tasks.c.result,
        tasks.c.error,
        tasks.c.started_at,
        tasks.c.ended_at,
    )
)


@dataclass(slots=True)
class Append:
    """One event to append, and the task-row changes that apply only if the event is new."""

    session_id: str
    task_id: str | None
    parent_task_id: str | None
    type: str
    data: str  # JSON text
    key: str | None = None
    new_task: dict[str, Any] | None = None
    task_values: dict[str, Any] | None = None
    # A status transition is dropped, with its event, once the task is terminal.
    status: TaskStatus | None = None
    event: Event | None = field(default=None)
    error: BaseException | None = field(default=None)
    # For a caller that queued it without waiting (`enqueue`): where it hears of a failure,
    # and what refuses this append if an earlier one of the chain failed.
    chain: Chain | None = field(default=None)
    # Not an event but a step's recorded outcome, (n, name, output, replace): written to
    # tether_steps in the transaction of the events queued before it; a record of the step
    # that is there already is kept, unless `replace`.
    step: tuple[int, str, str, bool] | None = None
    # Its key cannot be in the log yet: its task's body has never run before (a replay's
    # is looked up). The log does not look it up; the unique index would still refuse it.
    fresh: bool = False
    # Conversation turns whose branch this event shows (a turn and the turns before it):
    # their rows' `selected_seq` take the event's seq, whatever their status.
    selects: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class Chain:
    """Appends that commit in order, or not at all after the first of them that fails: the
    log records that failure here and refuses every later append of the chain with it."""

    error: BaseException | None = None
    first: Append | None = None  # the append that failed first


def fail(a: Append, error: BaseException) -> None:
    """The append failed with `error`; so does every later append of its chain."""
    a.error = error
    chain = a.chain
    if chain is not None and chain.error is None:
        chain.error = error
        chain.first = a


def check_values(a: Append) -> None:
    """Refuse, at submit, task fields the log does not write (a caller's bug)."""
    if a.new_task is not None and not _NEW_TASK_SET.issuperset(a.new_task):
        unknown = ", ".join(sorted(set(a.new_task) - _NEW_TASK_SET))
        raise ValueError(f"unknown new task fields: {unknown}")
    if a.task_values and not TASK_COLUMNS.issuperset(a.task_values):
        unknown = ", ".join(sorted(set(a.task_values) - TASK_COLUMNS))
        raise ValueError(f"unknown task fields: {unknown}")
