"""The model agents this process serves, and what each of their turns is given.

`Installed` holds the agents' configs and what their turns share (the store, each agent's
model once built, the MCP servers' connections); `TurnInput` is what a turn is asked. Light
to import: no provider SDK loads until a turn builds its model. Registering the agents with
the runtime is `register.py`'s; the turn itself is `turn.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, model_validator

from tether.attachment_refs import Attachment
from tether.db.store import Store
from tether.llm.config import ModelAgentConfig
from tether.llm.mcp_servers import McpConnections
from tether.llm.providers import api_key, build_model
from tether.quotas import limits

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from tether.llm.model_processes import ModelProcesses


def message_text(text: str) -> str:
    """What a message may say: no NUL (which no database keeps). Only blanks is no text (a
    message may be its files alone), so no model is sent a text of blanks: providers refuse
    one."""
    if "\x00" in text:
        raise ValueError("a message cannot hold a NUL character")
    return text if text.strip() else ""


NOTHING_SAID = "a message needs some text or an attached file"


def says_something(text: str, attachments: list[Any]) -> None:
    """Refuse a message with neither text nor files (after `message_text`)."""
    if not text and not attachments:
        raise ValueError(NOTHING_SAID)


class TurnInput(BaseModel):
    text: Annotated[str, AfterValidator(message_text)] = Field(
        "",
        max_length=100_000,
        description="The user's message (empty, or left out, when it carries files).",
    )
    parent: str | None = Field(
        None,
        max_length=255,
        description="The turn this one follows in the conversation (null: a first message).",
    )
    regenerates: str | None = Field(
        None,
        max_length=255,
        description="Answers this user message again (its node id): a regenerated reply.",
    )
    tool_call_id: str | None = Field(
        None, max_length=255, description="For a sub-agent: the delegate call that started it."
    )
    attachments: list[Attachment] = Field(
        default_factory=list,
        max_length=100,
        description="Files the message carries, in the session's workspace.",
    )

    @model_validator(mode="after")
    def _says_something(self) -> TurnInput:
        says_something(self.text, self.attachments)
        return self


@dataclass(slots=True)
class Installed:
    configs: dict[str, ModelAgentConfig]
    store: Store
    data_dir: Path
    models: dict[str, Model] = field(default_factory=dict)
    # The MCP servers' connections: one per chat session and server (see mcp_servers).
    mcp: McpConnections = field(default_factory=McpConnections)
    # Where the model calls run (None: on this process's loop; see model_processes.py).
    procs: ModelProcesses | None = None

    def model(self, cfg: ModelAgentConfig) -> Model:
        """The agent's model, built by its first call and kept."""
        if cfg.name not in self.models:
            self.models[cfg.name] = build_model(cfg)
        return self.models[cfg.name]

    def check(self, cfg: ModelAgentConfig) -> None:
        """Raise ModelFailed, saying why, if the agent's model cannot be called (its key)."""
        api_key(cfg)

    def processes(self) -> ModelProcesses | None:
        """The model processes (`model_processes` of them), or None: calls run here."""
        if self.procs is None and (size := limits().model_processes) > 0:
            from tether.llm.model_processes import ModelProcesses

            self.procs = ModelProcesses(size, list(self.configs.values()))
        return self.procs

    async def close(self) -> None:
        """Stop the model processes (the server is stopping)."""
        if self.procs is not None:
            await self.procs.stop()
            self.procs = None

    def default_agent(self) -> ModelAgentConfig | None:
        configs = list(self.configs.values())
        return next((c for c in configs if c.default), configs[0] if configs else None)


_installed: Installed | None = None


def installed() -> Installed | None:
    """The model agents this process serves (None until they are registered)."""
    return _installed


def set_installed(inst: Installed) -> None:
    """Make `inst` what `installed()` returns (registering does, `register.install`)."""
    global _installed
    _installed = inst
