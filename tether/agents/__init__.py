"""Built-in agents, added to the agent registry by the services (`register`)."""

from tether.agents import batch
from tether.runtime.agent import AgentRegistry


def register(registry: AgentRegistry) -> None:
    """Add the built-in agents to `registry`."""
    batch.register(registry)
