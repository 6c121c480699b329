"""The model an agent's config names: Anthropic's Messages API, an OpenAI-compatible Chat
Completions server, or the offline demo. Light to import: a provider's SDK (part of about
1.5 s of pydantic-ai imports) loads with the first model built."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tether.errors import ModelFailed
from tether.llm.config import ModelAgentConfig

if TYPE_CHECKING:
    from pydantic_ai.models import Model

# What `build_model` imports for each provider (the demo's model is Tether's own).
_SDK_MODULES = {
    "anthropic": ("pydantic_ai.models.anthropic", "pydantic_ai.providers.anthropic"),
    "openai": (
        "pydantic_ai.models.openai",
        "pydantic_ai.profiles.openai",
        "pydantic_ai.providers.openai",
    ),
}


def load_sdk(provider: str) -> None:
    """Import `provider`'s SDK (about a second), as `build_model` would: a caller runs this
    on a thread so that the event loop goes on serving meanwhile."""
    for name in _SDK_MODULES.get(provider, ()):
        importlib.import_module(name)


def api_key(cfg: ModelAgentConfig) -> str:
    """The agent's API key; raises ModelFailed (saying why) when it is not set."""
    key = cfg.api_key()
    if key is None:
        raise ModelFailed(f"agent {cfg.name!r} cannot call its model: {cfg.problem()}")
    return key


def build_model(cfg: ModelAgentConfig) -> Model:
    """The agent's model, ready to call; raises ModelFailed (saying why) when it cannot be
    called, e.g. its API key is not set."""
    key = api_key(cfg)
    if cfg.provider == "demo":
        from tether.llm import demo

        return demo.build(cfg.model_name)
    if cfg.provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(
            cfg.model_name, provider=AnthropicProvider(api_key=key, base_url=cfg.base_url)
        )
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.profiles.openai import OpenAIModelProfile
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(
        cfg.model_name,
        provider=OpenAIProvider(api_key=key, base_url=cfg.base_url),
        # A stream that ends without a finish_reason was cut off (raised, so it is retried),
        # not a finished reply.
        profile=OpenAIModelProfile(
            openai_chat_streaming_requires_finish_reason=cfg.stream_end_required
        ),
    )
