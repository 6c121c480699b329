"""Starting a conversation's turn: which model agent answers, and where the turn goes in
the conversation's tree. Used by every route that starts one (a message, a regenerate, a
model agent's task started directly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether import quotas
from tether.errors import InvalidInput, NotFound
from tether.llm import conversation
from tether.llm.config import ModelAgentConfig
from tether.llm.installed import Installed, installed
from tether.model import Task

if TYPE_CHECKING:
    from tether.db.engine import Database
    from tether.runtime.engine import Runtime
    from tether.settings import Settings

NO_MODEL = (
    "no model agent is configured: point TETHER_AGENTS_FILE at a TOML file of agents "
    "(README, 'Model agents') and set the provider's API key in the server's environment"
)


class Missing:
    """Not given (as opposed to given as null)."""


MISSING = Missing()


def model_agents() -> Installed:
    """The installed model agents; InvalidInput (422) when there are none."""
    inst = installed()
    if inst is None or not inst.configs:
        raise InvalidInput(NO_MODEL)
    return inst


def model_agent(inst: Installed, name: str | None) -> ModelAgentConfig:
    """The agent called `name` (None: the default), ready to answer; InvalidInput if there
    is none such a person may use, or it is not ready (says why)."""
    cfg = inst.default_agent() if name is None else inst.configs.get(name)
    if cfg is None or cfg.internal:
        known = ", ".join(sorted(n for n, c in inst.configs.items() if not c.internal))
        raise InvalidInput(f"there is no model agent called {name!r}; you can use {known}")
    if (why := cfg.problem()) is not None:
        raise InvalidInput(f"{cfg.name} is not ready: {why}")
    return cfg


def turns_agents() -> list[str]:
    """The model agents: a turn stored before the conversation tree is one of theirs."""
    return list(model_agents().configs)


async def start_turn(
    runtime: Runtime,
    db: Database,
    settings: Settings,
    session_id: str,
    agent: str,
    text: str,
    *,
    parent: str | None | Missing = MISSING,
    regenerates: str | None = None,
    task_id: str | None = None,
    request_hash: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> tuple[Task, bool]:
    """Start (or queue) a turn that follows `parent` (default: the end of the branch shown);
    it becomes the branch shown. Turns run one at a time in a session, in the order sent.
    `attachments`: the files its message carries (tether.attachments.Attachment, dumped)."""
    # Placing it (reading the tree, creating it) is one at a time per session on every
    # process: two messages sent at once follow one another, never the same turn. It runs
    # after every turn created before it (conversation.queue: the log's order).
    async with db.lock(f"turns:{session_id}"):
        turns = await conversation.read_tree(db, session_id, turns_agents())
        if isinstance(parent, Missing):
            parent = conversation.tip(turns)
        elif parent is not None and all(t.id != parent for t in turns):
            raise NotFound("the message to answer after is not in this conversation")
        # A retry with its Idempotency-Key gets its turn, whatever the queue holds now.
        if task_id is None or all(t.id != task_id for t in turns):
            quotas.check_queued_turns(sum(not t.status.terminal for t in turns), settings)
        inp: dict[str, Any] = {"text": text, "parent": parent, "regenerates": regenerates}
        if attachments:
            inp["attachments"] = attachments
        return await runtime.create_task(
            session_id,
            agent,
            inp,
            task_id,
            follows=parent,
            shows=tuple(conversation.branch(turns, parent)),
            request_hash=request_hash,
        )
