"""What a turn keeps of its model's replies and tool results, within the log's bounds.

A reply is saved (and sent back to the model) within `max_saved_response_bytes`: long text
is cut saying so, and a tool call whose arguments do not fit keeps, in their place, why
(`CUT_ARGS`; the call is then refused to the model). A tool's result and a sub-agent's
answer are cut to `max_tool_result_chars`. A finished turn's result holds its text and its
messages as later turns will read them, within what one event may hold.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)

# What a turn keeps: a tool's result (MCP included; the setting max_tool_result_chars) and
# a reply's text, each at most this many characters (the cut is said where it is); a turn's
# result holds its messages. A reply whole: max_saved_response_bytes.
MAX_REPLY_TEXT = 200 * 1024
# In place of a tool call's arguments that did not fit in the saved reply.
CUT_ARGS = "_tether_cut"


def bounded(text: str, limit: int, what: str) -> str:
    """Text of at most about `limit` characters; a cut says how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} characters of {what} cut: Tether keeps {limit // 1024} KiB)"


def bounded_response(response: ModelResponse, limit: int) -> ModelResponse:
    """The reply as it is saved (and sent back to the model): within about `limit` bytes.
    A tool call whose arguments do not fit keeps, instead of them, why (the call is then
    refused to the model, saying so)."""
    parts: list[ModelResponsePart] = []
    room = limit
    for p in response.parts:
        if isinstance(p, TextPart):
            keep = min(MAX_REPLY_TEXT, max(room, 1024))
            if len(p.content) > keep:
                p = dataclasses.replace(p, content=bounded(p.content, keep, "this reply"))
            room -= len(p.content.encode())
        elif isinstance(p, ToolCallPart):
            call: ToolCallPart[Any] = p  # pydantic-ai's typed subclasses narrow `args`
            size = args_size(call.args)
            if size > room:
                why = (
                    f"the arguments of this call ({size:,} bytes) did not fit in what a reply "
                    f"may hold (max_saved_response_bytes = {limit:,} bytes, the reply's other "
                    "parts included): make smaller calls, e.g. write a file in parts"
                )
                p = dataclasses.replace(call, args={CUT_ARGS: why})
                size = len(why)
            room -= size
        parts.append(p)
    return dataclasses.replace(response, parts=parts)


def args_size(args: Any) -> int:
    """A tool call's arguments' size in bytes (as JSON)."""
    if args is None:
        return 0
    return len(args.encode() if isinstance(args, str) else json.dumps(args).encode())


def text_of(response: ModelResponse | None) -> str:
    """A reply's text (its tool calls and other parts left out)."""
    if response is None:
        return ""
    return "".join(p.content for p in response.parts if isinstance(p, TextPart))


def dump(messages: list[ModelMessage]) -> list[Any]:
    data: list[Any] = ModelMessagesTypeAdapter.dump_python(messages, mode="json")
    return data


def history_of(turn: list[ModelMessage], budget: int) -> list[Any]:
    """The turn's messages as later turns will see them, within `budget` bytes (they are
    kept in the turn's result, which the log bounds): long tool results are cut, then cut
    short, and at worst only the user's message and the final answer are kept."""
    for keep in (16_384, 1024):
        cut = [_cut_tool_results(m, keep) for m in turn]
        data = dump(cut)
        if len(json.dumps(data)) <= budget:
            return data
    return dump([turn[0], turn[-1]] if len(turn) > 1 else turn)


def _cut_tool_results(message: ModelMessage, keep: int) -> ModelMessage:
    if not isinstance(message, ModelRequest):
        return message
    parts: list[ModelRequestPart] = []
    for p in message.parts:
        if isinstance(p, ToolReturnPart) and isinstance(p.content, str) and len(p.content) > keep:
            result: ToolReturnPart[Any, Any] = p  # pydantic-ai's typed subclasses narrow it
            more = len(p.content) - keep
            p = dataclasses.replace(
                result, content=f"{p.content[:keep]}… ({more} characters cut here)"
            )
        parts.append(p)
    return dataclasses.replace(message, parts=parts)
