"""One attempt of a model call: the provider's stream read to its end, shown as it comes.

This is the part of a model call that costs CPU per delta (the provider SDK's HTTP and SSE
parsing, pydantic-ai's part assembly, the coalescing): the same code runs in a model process
(`model_process.py`, the default: off the API's event loop) or in the server's own process
(`model_processes = 0`). What it shows goes to an `Emitter` (coalesced by `ReplyStream`);
what it returns is the reply as it is saved (JSON), within `max_bytes`. The tokens the
provider reported for the attempt go to the `Emitter` too, as a `model.usage` event, whether
the attempt ended well or not (tether/usage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_ai.direct import model_request_stream
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from tether.llm.reply import args_size, bounded_response
from tether.llm.stream import ReplyStream
from tether.usage import EVENT as USAGE_EVENT
from tether.usage import tokens_of


class StreamCut(Exception):
    """The reply's stream ended without the provider's end marker: the call broke off."""


@dataclass(slots=True, frozen=True)
class Request:
    """What one attempt asks (plain data: it crosses to a model process pickled)."""

    messages: list[ModelMessage]
    tools: list[ToolDefinition]
    max_tokens: int
    max_bytes: int
    end_required: bool
    label: str  # the model, as the person reads it (for StreamCut's message)


async def stream_reply(model: Model, req: Request, reply: ReplyStream) -> Any:
    """Stream one attempt into `reply`; returns the reply as saved (JSON). Raises the
    provider's errors, and StreamCut for a stream that ended without its end marker. The
    caller closes (or aborts) `reply`."""
    params = ModelRequestParameters(function_tools=req.tools)
    settings: ModelSettings = {"max_retries": 0, "max_tokens": req.max_tokens}
    size, cut = 0, False
    async with model_request_stream(
        model, req.messages, model_settings=settings, model_request_parameters=params
    ) as stream:
        try:
            async for event in stream:
                reply.feed(event)
                size += event_size(event)
                if size > req.max_bytes:
                    cut = True
                    break  # cut here: the rest is neither read nor kept
        finally:
            # What the provider reported, a failed or cut attempt's too: it was paid for.
            counts = tokens_of(stream.usage)
            if any(counts.values()):
                reply.ctx.emit(USAGE_EVENT, counts)
        response = stream.get()
    # A reply cut at max_bytes ends without its end marker too.
    if req.end_required and response.state == "incomplete" and not cut:
        raise StreamCut(
            f"the reply from {req.label} broke off: its stream ended without the "
            "provider's end marker"
        )
    reply.close()
    saved = bounded_response(response, req.max_bytes)
    return ModelMessagesTypeAdapter.dump_python([saved], mode="json")[0]


def event_size(event: Any) -> int:
    """About how many bytes a streamed event adds to the reply."""
    if isinstance(event, PartStartEvent):
        part = event.part
        if isinstance(part, TextPart):
            return len(part.content.encode())
        return args_size(part.args) if isinstance(part, ToolCallPart) else 0
    if isinstance(event, PartDeltaEvent):
        delta: Any = event.delta
        text = getattr(delta, "content_delta", None)
        if isinstance(text, str):
            return len(text.encode())
        return args_size(getattr(delta, "args_delta", None))
    return 0
