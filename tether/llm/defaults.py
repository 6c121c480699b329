"""The model agents a server offers when no agents file is given: a chat on the first run.

- `TETHER_MODEL_URL` set: an assistant on that OpenAI-compatible server (a local model;
  `TETHER_MODEL` names the model, no key needed).
- else `ANTHROPIC_API_KEY` or `OPENAI_API_KEY` set: an assistant on that provider
  (`TETHER_MODEL` picks another model, as `provider:model`).
- else: the offline demo, a scripted model that shows every part of the product in a minute
  (a streamed reply with markdown and code, a tool call, two sub-agents, one approval).

The assistant may hand questions to a researcher sub-agent and write files in the session's
workspace (each write asks you first).
"""

from __future__ import annotations

import os

from tether.llm.config import ModelAgentConfig
from tether.settings import Settings

ASSISTANT_SYSTEM = (
    "You are a careful, friendly assistant working inside Tether, where long tasks keep "
    "running on the server. Answer in markdown. For a question that needs digging, hand it "
    "to the researcher with the delegate tool (several at once when they are independent). "
    "You can read, write and list files in this session's workspace; writing asks the user "
    "first."
)
RESEARCHER_SYSTEM = (
    "You are a researcher. You get one question with everything you need to know; answer it "
    "thoroughly but briefly, in markdown, and say what you are unsure of."
)
DEFAULT_MODELS = {"anthropic": "anthropic:claude-sonnet-4-5", "openai": "openai:gpt-4o"}


def default_agents(settings: Settings) -> list[ModelAgentConfig]:
    if settings.model_url:
        name = settings.model or "default"
        model = name if name.startswith("openai:") else f"openai:{name}"
        return _assistant(model, base_url=settings.model_url, keyless=True)
    for provider, env in (("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")):
        if os.environ.get(env):
            model = settings.model or DEFAULT_MODELS[provider]
            return _assistant(model)
    return demo_agents()


def _assistant(model: str, **extra: object) -> list[ModelAgentConfig]:
    return [
        ModelAgentConfig(
            name="assistant",
            model=model,
            system=ASSISTANT_SYSTEM,
            description="A general assistant that can research and keep notes in the workspace.",
            tools=["read_file", "write_file", "list_files"],
            approval=["write_file"],
            delegates=["researcher"],
            default=True,
            **extra,  # base_url, keyless: checked by pydantic
        ),
        ModelAgentConfig(
            name="researcher",
            model=model,
            system=RESEARCHER_SYSTEM,
            description="Looks one question up and reports back.",
            **extra,
        ),
    ]


def demo_agents() -> list[ModelAgentConfig]:
    return [
        ModelAgentConfig(
            name="demo",
            model="demo:guide",
            description="A scripted tour, offline: a streamed reply, a tool call, two "
            "sub-agents and one approval. Set ANTHROPIC_API_KEY or OPENAI_API_KEY for a real "
            "model.",
            tools=["read_file", "write_file", "list_files"],
            approval=["write_file"],
            delegates=["demo-helper"],
            default=True,
        ),
        ModelAgentConfig(
            name="demo-helper",
            model="demo:helper",
            description="The demo's sub-agent.",
            internal=True,
        ),
    ]
