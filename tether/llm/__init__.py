"""Model agents: an agent loop over real LLM APIs that streams into the log, calls tools,
delegates to sub-agents and asks a person for approval, all of it durable. Registering them
is light (`installed.py`); the model layer loads with the first turn that runs."""

from tether.llm.installed import install

__all__ = ["install"]
