"""Model agents: an agent loop over real LLM APIs that streams into the log, calls tools,
delegates to sub-agents and asks a person for approval, all of it durable. Imported only
when `TETHER_AGENTS_FILE` is set: the embedded demo never loads a provider SDK."""

from tether.llm.agent import install

__all__ = ["install"]
