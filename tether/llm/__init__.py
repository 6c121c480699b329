"""Model agents: an agent loop over real LLM APIs that streams into the log, calls tools,
delegates to sub-agents and asks a person for approval, all of it durable. Registering them
is light (`register.py`); the model layer loads with the first turn that runs (`turn.py`,
the model loop)."""

from tether.llm.register import install

__all__ = ["install"]
