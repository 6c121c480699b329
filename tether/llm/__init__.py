"""Model agents: an agent loop over real LLM APIs that streams into the log, calls tools,
delegates to sub-agents and asks a person for approval, all of it durable. Registering them
is light (`register.py`); the model layer loads with the first turn that runs (`turn.py`,
the model loop).

register.py      registering the model agents with the runtime, without the model layer
installed.py     the agents this process serves, and what each turn is given
config.py        the agents file; defaults.py: the agents without one; demo.py: the demo
new_turn.py      starting a turn: which agent answers, where it goes in the conversation
turn.py          the model loop: one turn, its durable steps and their order
model_call.py    one model call (streamed, retried, bounded); stream.py: as log events
attempt.py       one attempt's provider stream, read and shown (the per-delta work)
model_processes.py  the processes attempts run in, off the API's loop (model_process.py)
tool_calls.py    one tool call; tools.py: the built-in tools; mcp_servers.py: MCP servers
reply.py         what a turn keeps; history.py: what it sends its model
conversation.py  the tree of turns and the branch shown
approvals.py     a tool call waiting for a person's answer (its table: db/approvals.py)
providers.py     the model a config names
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.llm.register import install

__all__ = ["install"]


def __getattr__(name: str) -> Any:
    # Lazily: a model process (model_process.py) imports this package without the server's
    # database layer, which `register` brings (a second of its start).
    if name == "install":
        from tether.llm.register import install

        return install
    raise AttributeError(name)
