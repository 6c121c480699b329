"""Agents: named async functions with a validated input, kept in a registry.

    @agent("item", input=ItemInput)
    async def item(ctx: TaskContext, inp: ItemInput) -> dict: ...

An agent's body is replayed after a crash: everything it does that is not deterministic
(time, randomness, I/O, model calls) belongs in `ctx.step(...)`, whose result is checkpointed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tether.errors import InvalidInput
from tether.validation import plain_errors

if TYPE_CHECKING:
    from tether.runtime.context import TaskContext

AgentFn = Callable[["TaskContext", Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    fn: AgentFn
    input_model: type[BaseModel]
    description: str
    # What a client may show of the agent (a model agent says which model, and if it is ready).
    meta: dict[str, Any] = field(default_factory=dict)
    # As a sub-agent, run as a DBOS workflow of its own (needed for DBOS messaging: a model
    # agent waits for approvals in `recv`) rather than inside its parent's (far cheaper).
    own_workflow: bool = False
    # Run only as another agent's sub-agent: not offered as a thing to start.
    internal: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        fn: AgentFn,
        *,
        input: type[BaseModel],
        description: str = "",
        own_workflow: bool = False,
        internal: bool = False,
    ) -> AgentSpec:
        """An agent's spec; its description is the first paragraph of `fn`'s docstring
        unless given (see `agent`)."""
        doc = description or inspect.getdoc(fn) or ""
        return cls(
            name,
            fn,
            input,
            doc.strip().split("\n\n")[0],
            own_workflow=own_workflow,
            internal=internal,
        )

    def validate(self, value: Any) -> BaseModel:
        try:
            return self.input_model.model_validate(value)
        except ValidationError as exc:
            raise InvalidInput(
                f"input for agent {self.name!r} is invalid",
                errors=plain_errors(exc.errors(include_url=False)),
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_model.model_json_schema(),
            "internal": self.internal,
            **self.meta,
        }


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, AgentSpec] = {}

    def add(self, spec: AgentSpec) -> None:
        self._agents[spec.name] = spec

    def get(self, name: str) -> AgentSpec:
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(sorted(self._agents)) or "none"
            raise InvalidInput(f"unknown agent {name!r}; known agents: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._agents

    def all(self) -> list[AgentSpec]:
        return [self._agents[k] for k in sorted(self._agents)]

    def code_version(self, base: str) -> str:
        """A hash of `base` and every agent's module source: changes when agent code does."""
        h = hashlib.sha256(base.encode())
        modules = sorted({spec.fn.__module__ for spec in self._agents.values()})
        for name in modules:
            h.update(_source(name).encode())
        return h.hexdigest()[:16]


def _source(module: str) -> str:
    """A module's source, read from its file when it is not imported yet (an agent whose
    code loads lazily, on its first run); its name if it has none."""
    try:
        if module in sys.modules:
            return inspect.getsource(sys.modules[module])
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None:
            return Path(spec.origin).read_text()
    except (OSError, TypeError, ImportError, ValueError):
        pass
    return module


registry = AgentRegistry()


def agent(
    name: str,
    *,
    input: type[BaseModel],
    description: str = "",
    own_workflow: bool = False,
    internal: bool = False,
) -> Callable[[AgentFn], AgentFn]:
    """Register an async function as an agent. `own_workflow`: as a sub-agent it runs as a
    DBOS workflow of its own (for an agent that calls DBOS itself, e.g. `DBOS.recv`).
    `internal`: it runs only as another agent's sub-agent, so clients do not offer it as a
    thing to start (it can still be started by name)."""

    def register(fn: AgentFn) -> AgentFn:
        registry.add(
            AgentSpec.of(
                name,
                fn,
                input=input,
                description=description,
                own_workflow=own_workflow,
                internal=internal,
            )
        )
        return fn

    return register


def load_agent_modules(modules: list[str]) -> None:
    """Import modules whose `@agent` functions register themselves (settings `agents`)."""
    for name in modules:
        importlib.import_module(name)
