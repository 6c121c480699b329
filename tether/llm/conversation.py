"""A session's conversation: a tree of turns, the branch shown, and what a turn sends.

A turn (a top-level task of a model agent) follows another turn (`follows`; none for a first
message). Turns that follow the same turn are alternatives: an edited message, or a reply
regenerated. Which branch is shown is decided at each fork by the turn whose branch was shown
last: its row's `selected_seq`, the seq of its creation or of its newest
`conversation.selected` event. The page applies the same rule to the same events, so every
tab, and every reader that resumes from the log, sees the same tree and the same branch.

What a turn sends the model is `history.py`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from tether.db.engine import Database
from tether.db.schema import tasks
from tether.events.log import read_task_events
from tether.model import UNFINISHED_VALUES, Event, TaskStatus, events_size

# Built once, with bound parameters: building a Core statement per turn (its `in_`s and
# comparisons) cost more than running it (the 50-turn benchmark's API process).
_TURN_OF = sa.or_(
    tasks.c.selected_seq.is_not(None), tasks.c.agent.in_(sa.bindparam("agents", expanding=True))
)
_MINE = (
    sa.select(tasks.c.created_seq)
    .where(tasks.c.id == sa.bindparam("turn_id"), tasks.c.session_id == sa.bindparam("sid"))
    .scalar_subquery()
)
_QUEUE = (
    sa.select(tasks.c.id)
    .where(
        tasks.c.session_id == sa.bindparam("sid"),
        tasks.c.parent_id.is_(None),
        _TURN_OF,
        tasks.c.created_seq < _MINE,
        tasks.c.status.in_(UNFINISHED_VALUES),
    )
    .order_by(tasks.c.created_seq)
)
_TREE = (
    sa.select(tasks.c.id, tasks.c.follows, tasks.c.selected_seq, tasks.c.status)
    .where(tasks.c.session_id == sa.bindparam("sid"), tasks.c.parent_id.is_(None), _TURN_OF)
    .order_by(sa.func.coalesce(tasks.c.created_seq, 0), tasks.c.created_at, tasks.c.id)
)


async def queue(db: Database, session_id: str, turn_id: str, agents: list[str]) -> list[str]:
    """The turns a turn waits for: those of its session created before it (a lower
    `created_seq`, which the log allocates under the session's row, whichever process made
    them) that have not ended, oldest first. Each turn waits for all of them, so a
    session's turns run one at a time, in the order they were sent, on any number of
    processes."""
    params = {"sid": session_id, "turn_id": turn_id, "agents": agents}
    return list(await db.read(lambda c: c.execute(_QUEUE, params).scalars().all()))


@dataclass(slots=True)
class TurnRef:
    id: str
    follows: str | None
    rank: int  # -1: stored before the tree (a linear conversation)
    order: int  # creation order
    status: TaskStatus


async def read_tree(db: Database, session_id: str, agents: list[str]) -> list[TurnRef]:
    """Every turn of the session, oldest first: a top-level task created as a turn (its
    `selected_seq` is set then), or of a model agent `agents` names (a turn stored before
    the tree, which follows the turn created before it: the conversation was linear)."""
    params = {"sid": session_id, "agents": agents}
    rows = await db.read(lambda c: c.execute(_TREE, params).all())
    out: list[TurnRef] = []
    prev: str | None = None
    for i, (tid, follows, selected, status) in enumerate(rows):
        legacy = selected is None
        out.append(
            TurnRef(
                tid, prev if legacy else follows, -1 if legacy else selected, i, TaskStatus(status)
            )
        )
        prev = tid
    return out


def tip(turns: list[TurnRef]) -> str | None:
    """The last turn of the branch shown (None: no turn yet)."""
    kids: dict[str | None, list[TurnRef]] = {}
    for t in turns:
        kids.setdefault(t.follows, []).append(t)
    node: str | None = None
    seen: set[str] = set()
    while kids.get(node):
        best = max(kids[node], key=lambda t: (t.rank, t.order))
        if best.id in seen:
            break
        seen.add(best.id)
        node = best.id
    return node


def branch(turns: list[TurnRef], last: str | None) -> list[str]:
    """The turns from the first message down to `last`, in order."""
    by_id = {t.id: t for t in turns}
    out: list[str] = []
    node = last
    while node is not None and node in by_id and node not in out:
        out.append(node)
        node = by_id[node].follows
    out.reverse()
    return out


def _field(db: Database, column: sa.Column[str], key: str) -> sa.ColumnElement[str]:
    """One top-level field of a JSON text column, read by the database (not the whole
    value: a turn's result holds its messages)."""
    if db.sqlite:
        return sa.func.json_extract(column, f"$.{key}")
    field: sa.ColumnElement[str] = sa.cast(column, JSONB)[key].astext
    return field


def _attachments(files: str | None) -> list[Any]:
    """A turn's `input.attachments` as the database read it: a list of objects, else none
    (an imported turn's input may hold anything there: `"x"`, a number, a list of numbers)."""
    try:
        found = json.loads(files) if isinstance(files, str) else None
    except ValueError:
        return []
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


async def read_turns(
    db: Database, session_id: str, agents: list[str], texts: bool = True
) -> list[dict[str, Any]]:
    """The conversation as a page draws it before any event of it is loaded: every turn
    with what it follows, its rank, status, and (`texts`) its message and reply, oldest
    first."""
    turns = await read_tree(db, session_id, agents)
    if not turns:
        return []
    none = sa.null()
    q = sa.select(
        tasks.c.id,
        tasks.c.agent,
        tasks.c.status,
        _field(db, tasks.c.input, "text") if texts else none,
        _field(db, tasks.c.input, "regenerates"),
        _field(db, tasks.c.input, "attachments"),
        _field(db, tasks.c.result, "text") if texts else none,
        _field(db, tasks.c.error, "message"),
        tasks.c.created_at,
        tasks.c.ended_at,
        tasks.c.last_seq,
    ).where(tasks.c.session_id == session_id, tasks.c.id.in_([t.id for t in turns]))
    rows = {r[0]: r for r in await db.read(lambda c: c.execute(q).all())}
    out = []
    for t in turns:
        _, agent, status, text, regenerates, files, reply, error, created, ended, last = rows[t.id]
        out.append(
            {
                "id": t.id,
                "parent": t.follows,
                "regenerates": regenerates,
                "rank": t.rank,
                "agent": agent,
                "status": status,
                "text": text,
                "attachments": _attachments(files),
                "reply": reply,
                "error": error,
                "created_at": created,
                "ended_at": ended,
                "last_seq": last,
            }
        )
    return out


def shown(turns: list[dict[str, Any]]) -> list[str]:
    """The branch shown, from `read_turns`' list."""
    refs = [
        TurnRef(t["id"], t["parent"], t["rank"], i, TaskStatus(t["status"]))
        for i, t in enumerate(turns)
    ]
    return branch(refs, tip(refs))


async def turn_events(
    db: Database, session_id: str, newest: list[str], limit: int, max_bytes: int
) -> list[Event]:
    """The events of the turns `newest` (oldest first) and their sub-agents', newest turn
    first, whole turns only, until `limit` events or `max_bytes` of their data: a turn that
    does not fit whole is left for the reader to ask for (`/events?task=`)."""

    def read(c: sa.Connection) -> list[Event]:
        out: list[Event] = []
        size = 0
        for tid in reversed(newest):
            evs = read_task_events(c, session_id, [tid], 0, limit - len(out) + 1)
            grown = size + events_size(evs)
            if len(out) + len(evs) > limit or grown > max_bytes:
                break
            out.extend(evs)
            size = grown
        out.sort(key=lambda e: e.seq)
        return out

    return await db.read(read)
