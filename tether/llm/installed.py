"""The model agents this process serves, registered without loading a provider SDK.

Registering is cheap (a config and a pydantic input model per agent); the model layer
(`tether.llm.agent`, pydantic-ai and the provider SDKs, about 1.5 s of imports) is loaded by
the first turn that runs, so a server start, a CLI command or a batch-only deployment does
not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from tether.db.store import Store
from tether.llm.config import ModelAgentConfig
from tether.llm.mcp_servers import McpConnections
from tether.runtime.agent import AgentRegistry, AgentSpec
from tether.runtime.context import TaskContext

# The module whose code runs a turn: the code version hashes its source (a change to it
# interrupts turns left running by the old code instead of replaying them on the new).
TURN_MODULE = "tether.llm.agent"


def message_text(text: str) -> str:
    """What a message may hold: some visible text, and no NUL (which no database keeps)."""
    if not text.strip():
        raise ValueError("a message needs some text")
    if "\x00" in text:
        raise ValueError("a message cannot hold a NUL character")
    return text


class TurnInput(BaseModel):
    text: Annotated[str, AfterValidator(message_text)] = Field(
        min_length=1, max_length=100_000, description="The user's message."
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


@dataclass(slots=True)
class Installed:
    configs: dict[str, ModelAgentConfig]
    store: Store
    data_dir: Path
    models: dict[str, Any] = field(default_factory=dict)
    # The MCP servers' connections: one per chat session and server (see mcp_servers).
    mcp: McpConnections = field(default_factory=McpConnections)

    def model(self, cfg: ModelAgentConfig) -> Any:
        if cfg.name not in self.models:
            from tether.llm.agent import build_model

            self.models[cfg.name] = build_model(cfg)
        return self.models[cfg.name]

    def default_agent(self) -> ModelAgentConfig | None:
        configs = list(self.configs.values())
        return next((c for c in configs if c.default), configs[0] if configs else None)


_installed: Installed | None = None


def installed() -> Installed | None:
    return _installed


def install(
    configs: list[ModelAgentConfig], registry: AgentRegistry, store: Store, data_dir: Path
) -> Installed:
    """Register each configured model agent (its turns run `tether.llm.agent.run_turn`)."""
    global _installed
    _installed = Installed({c.name: c for c in configs}, store, data_dir)
    for cfg in configs:
        registry.add(
            AgentSpec(
                cfg.name,
                _turn_fn(cfg.name),
                TurnInput,
                cfg.description or f"A model agent ({cfg.model}).",
                meta={
                    "kind": "model",
                    "model": cfg.label,
                    "ready": cfg.problem() is None,
                    "problem": cfg.problem(),
                    "default": cfg is _installed.default_agent(),
                    "demo": cfg.provider == "demo",
                    "internal": cfg.internal,
                    "tools": list(cfg.tools) + (["delegate"] if cfg.delegates else []),
                    "mcp": [m if isinstance(m, str) else m.command for m in cfg.mcp],
                    "delegates": cfg.delegates,
                    "approval": cfg.approval,
                },
                own_workflow=True,
            )
        )
    return _installed


def _turn_fn(name: str) -> Any:
    async def turn(ctx: TaskContext, inp: TurnInput) -> dict[str, Any]:
        from tether.llm.agent import run_turn

        assert _installed is not None
        return await run_turn(ctx, _installed, _installed.configs[name], inp)

    turn.__module__ = TURN_MODULE
    return turn
