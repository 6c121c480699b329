"""Registering the model agents with the runtime, without loading the model layer.

Each configured agent becomes a runtime agent (its own workflow) whose turns run
`tether.llm.turn.run_turn`. Registering is cheap (a config and a pydantic input model per
agent); the model layer (`turn.py`, pydantic-ai and the provider SDKs, about 1.5 s of
imports) is loaded by the first turn that runs, so a server start, a CLI command or a
batch-only deployment does not pay for it. It loads on a thread: imported on the event
loop, it stalled every request and stream of the process for about 2 s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether.db.store import Store
from tether.llm import providers
from tether.llm.config import ModelAgentConfig
from tether.llm.installed import Installed, TurnInput, installed, set_installed
from tether.runtime.agent import AgentRegistry, AgentSpec
from tether.runtime.context import TaskContext

# The module whose code fixes the order of a turn's durable steps: the code version hashes
# its source (a change to it interrupts turns left running by the old code instead of
# replaying them on the new).
TURN_MODULE = "tether.llm.turn"


def install(
    configs: list[ModelAgentConfig], registry: AgentRegistry, store: Store, data_dir: Path
) -> Installed:
    """Register each configured model agent (its turns run `tether.llm.turn.run_turn`)."""
    inst = Installed({c.name: c for c in configs}, store, data_dir)
    set_installed(inst)
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
                    "default": cfg is inst.default_agent(),
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
    return inst


def _load_model_layer(provider: str | None, mcp: bool) -> None:
    import tether.llm.turn  # noqa: F401 - loaded here, on the caller's thread

    if provider is not None:  # None: the calls run in model processes, which load it
        providers.load_sdk(provider)
    if mcp:  # the MCP client (fastmcp): seconds more, which the loop must not wait for
        import fastmcp.client.transports  # noqa: F401
        import pydantic_ai.mcp  # noqa: F401


def _turn_fn(name: str) -> Any:
    loaded: set[str] = set()

    async def turn(ctx: TaskContext, inp: TurnInput) -> dict[str, Any]:
        inst = installed()  # the latest registered (a registry may outlive one install)
        assert inst is not None
        provider = inst.configs[name].provider
        if provider not in loaded:  # the first turn of this provider: load the model layer
            procs = inst.processes()
            if procs is not None:
                await procs.start()  # they import while this process does
            sdk = provider if procs is None else None
            await asyncio.to_thread(_load_model_layer, sdk, bool(inst.configs[name].mcp))
            loaded.add(provider)
        from tether.llm.turn import run_turn

        return await run_turn(ctx, inst, inst.configs[name], inp)

    turn.__module__ = TURN_MODULE
    return turn
