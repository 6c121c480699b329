"""A local model server that speaks the providers' real streaming wire formats.

    POST /v1/messages            Anthropic Messages API, `stream: true` (SSE: message_start,
                                 content_block_start/delta/stop with text_delta and
                                 input_json_delta, message_delta, message_stop)
    POST /v1/chat/completions    OpenAI Chat Completions, `stream: true` (SSE chunks with
                                 delta.content and delta.tool_calls, then `data: [DONE]`)

It is a scripted "model": what it answers depends only on the conversation it is sent, so
tests can predict it. The last message decides:

- tool results               -> a text reply that quotes them ("Done: <result>; <result>")
- user text `delegate: a | b` -> "Delegating." and one `delegate` tool call per item, to the
                                agent named by `to NAME` (default `helper`)
- user text `write NAME: X`   -> a `write_file` tool call
- user text `read NAME`       -> a `read_file` tool call
- user text `fetch URL`       -> a `fetch` tool call
- user text `mcp NAME k=v …` -> a call of tool NAME with those arguments (ints where they
                                parse), e.g. a tool of an MCP server
- user text `echo: X`         -> X, as it is (markdown, HTML and all)
- user text `stamped N [by K]` -> N deltas of K words (default 1), each word the wall-clock
                                time its delta was sent (benchmarks measure latency with them)
- anything else               -> a reply of `words N` words (default 12), which counts the
                                user turns it has seen and says which request it is

Speed: `tokens_per_s` (settable at POST /_control) paces the deltas, one word per delta.
Faults: POST /_control {"faults": [{"status": 429, "retry_after": 1}, ...]} fails the next
requests in order; an API key containing `bad` gets 401 every time. A fault without a status
breaks the stream instead: `{"cut_after": N}` sends N deltas and closes it without the end
marker (no `message_delta`/`message_stop`; no `finish_reason`/`[DONE]`); `{"trickle_s": S}`
sends one word every S seconds and never ends. GET /_requests lists
what was asked (for assertions), each with `ended` once its reply's stream stopped (sent
whole, or its client went away), and `usage`: the token counts its stream reported on the
wire (`usage_of`), as far as it was sent.

Usage is reported in each wire format, with counts a test can predict: input tokens 7 + 3
per message of the request (of which 4 are cache reads once there is more than one), output
tokens one per delta. Anthropic: `message_start`'s usage (input, cache reads, 1 output) and
`message_delta`'s (the output so far); OpenAI: a last chunk with `usage` when the request
asks for it (`stream_options.include_usage`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_ids = itertools.count(1)


class Brain:
    """Decides the reply: a list of parts, each ("text", str) or ("tool", name, args)."""

    def __init__(self) -> None:
        self.tokens_per_s: float = 0.0
        self.faults: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.served = 0

    def reply(self, turns: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
        """turns: [(role, text-or-tool-results)], oldest first, as the provider layer parsed."""
        self.served += 1
        role, last = turns[-1] if turns else ("user", "")
        if role == "tool":
            return [("text", "Done: " + "; ".join(str(r) for r in last))]
        text = str(last)
        users = sum(1 for r, _ in turns if r == "user")
        if m := re.match(r"stamped (\d+)(?: by (\d+))?$", text):
            return [("stamped", int(m.group(1)), int(m.group(2) or 1))]
        if m := re.match(r"mcp (\w+)((?: \w+=\S+)*)$", text):
            args = dict(kv.split("=", 1) for kv in m.group(2).split())
            return [
                ("tool", m.group(1), {k: int(v) if v.isdigit() else v for k, v in args.items()})
            ]
        if text.startswith("echo: "):
            return [("text", text[6:])]
        if m := re.search(r"delegate:\s*(.+?)(?:\s+to\s+(\w+))?\s*$", text, re.S):
            agent = m.group(2) or "helper"
            items = [s.strip() for s in m.group(1).split("|") if s.strip()]
            return [("text", "Delegating.")] + [
                ("tool", "delegate", {"agent": agent, "task": item}) for item in items
            ]
        if m := re.search(r"write (\S+): (.+)$", text, re.S):
            return [("tool", "write_file", {"path": m.group(1), "content": m.group(2)})]
        if m := re.search(r"read (\S+)", text):
            return [("tool", "read_file", {"path": m.group(1)})]
        if m := re.search(r"fetch (\S+)", text):
            return [("tool", "fetch", {"url": m.group(1)})]
        n = int(m.group(1)) if (m := re.search(r"words (\d+)", text)) else 12
        head = f"Reply {self.served} to user turn {users}:"
        return [("text", " ".join([head] + [f"w{i}" for i in range(n)]))]

    def next_fault(self, api_key: str) -> dict[str, Any] | None:
        if "bad" in api_key:
            return {"status": 401}
        return self.faults.pop(0) if self.faults else None


def _words(text: str) -> list[str]:
    """The text cut into deltas of one word each (with its leading space)."""
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]]


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


class FakeLLM:
    def __init__(self) -> None:
        self.brain = Brain()
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.anthropic, methods=["POST"]),
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
                Route("/_control", self.control, methods=["POST"]),
                Route("/_requests", self.list_requests, methods=["GET"]),
            ]
        )

    async def control(self, request: Request) -> Response:
        body = await request.json()
        if "tokens_per_s" in body:
            self.brain.tokens_per_s = float(body["tokens_per_s"])
        if "faults" in body:
            self.brain.faults = list(body["faults"])
        if body.get("reset"):
            self.brain.requests.clear()
        return JSONResponse({"ok": True})

    async def _record(self, api: str, request: Request, body: Any, key: str) -> dict[str, Any]:
        """What was asked, for assertions (`size`: the request body's bytes)."""
        size = len(await request.body())
        entry = {"api": api, "body": body, "at": time.time(), "key": key, "size": size}
        entry["ended"] = False
        self.brain.requests.append(entry)
        return entry

    async def list_requests(self, _request: Request) -> Response:
        return JSONResponse(self.brain.requests)

    async def _pace(self, clock: list[float]) -> None:
        """Sleep until this stream's next token is due (a schedule, so the rate holds
        however long the work between tokens takes)."""
        tps = self.brain.tokens_per_s
        if tps > 0:
            now = time.monotonic()
            clock[0] = max(clock[0] + 1 / tps, now) if clock[0] else now + 1 / tps
            await asyncio.sleep(clock[0] - now)

    async def _deltas(self, part: tuple[Any, ...]) -> AsyncIterator[str]:
        """The part's text deltas, each when it is due; a stamped delta is stamped as sent."""
        clock = [0.0]
        if part[0] == "stamped":
            for i in range(part[1]):
                await self._pace(clock)
                stamp = f"{time.time():.6f}"
                yield ("" if i == 0 else " ") + " ".join([stamp] * part[2])
            return
        for w in _words(part[1]):
            await self._pace(clock)
            yield w

    def _fault(self, fault: dict[str, Any], kind: str) -> Response:
        status = int(fault["status"])
        headers = {}
        if "retry_after" in fault:
            headers["retry-after"] = str(fault["retry_after"])
        message = fault.get("message") or {
            401: "invalid x-api-key",
            429: "rate limited: slow down",
            529: "Overloaded",
        }.get(status, "server error")
        if kind == "anthropic":
            etype = {
                401: "authentication_error",
                429: "rate_limit_error",
                529: "overloaded_error",
            }.get(status, "api_error")
            body = {"type": "error", "error": {"type": etype, "message": message}}
        else:
            body = {"error": {"message": message, "type": "error", "code": str(status)}}
        return JSONResponse(body, status_code=status, headers=headers)

    # -- Anthropic ---------------------------------------------------------------------------

    async def anthropic(self, request: Request) -> Response:
        body = await request.json()
        # The SDK sends the key as x-api-key or, in newer versions, as a bearer token.
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "")
        entry = await self._record("anthropic", request, body, key)
        fault = self.brain.next_fault(key)
        if fault and "status" in fault:
            return self._fault(fault, "anthropic")
        turns: list[tuple[str, Any]] = []
        for msg in body.get("messages", []):
            content = msg["content"]
            if isinstance(content, str):
                turns.append((msg["role"], content))
                continue
            results = [b.get("content") for b in content if b.get("type") == "tool_result"]
            if results:
                turns.append(("tool", [_flat(r) for r in results]))
            else:
                text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
                turns.append((msg["role"], text))
        parts = self.brain.reply([t for t in turns if t[0] != "assistant"] or turns)
        stream = self._anthropic_stream(body.get("model", "fake"), parts, usage_of(body))
        return StreamingResponse(
            _ended(_broken(stream, fault, 2), entry),
            media_type="text/event-stream",
        )

    async def _anthropic_stream(
        self, model: str, parts: list[tuple[Any, ...]], usage: tuple[int, int] | None
    ) -> AsyncIterator[bytes]:
        tokens, cached = usage or (0, 0)
        msg_id = f"msg_{next(_ids)}"
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": tokens - cached,
                        "cache_read_input_tokens": cached,
                        "output_tokens": 1,
                    },
                },
            },
        )
        out_tokens = 0
        has_tool = False
        clock = [0.0]
        for i, part in enumerate(parts):
            if part[0] in ("text", "stamped"):
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                async for w in self._deltas(part):
                    out_tokens += 1
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": w},
                        },
                    )
            else:
                has_tool = True
                _, name, args = part
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {
                            "type": "tool_use",
                            "id": f"toolu_{next(_ids)}",
                            "name": name,
                            "input": {},
                        },
                    },
                )
                text = json.dumps(args)
                for k in range(0, len(text), 8):
                    await self._pace(clock)
                    out_tokens += 1
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": text[k : k + 8]},
                        },
                    )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": i})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "tool_use" if has_tool else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": out_tokens},
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})

    # -- OpenAI ------------------------------------------------------------------------------

    async def openai(self, request: Request) -> Response:
        body = await request.json()
        key = request.headers.get("authorization", "")
        entry = await self._record("openai", request, body, key)
        fault = self.brain.next_fault(key)
        if fault and "status" in fault:
            return self._fault(fault, "openai")
        turns: list[tuple[str, Any]] = []
        pending_tools: list[Any] = []
        for msg in body.get("messages", []):
            if msg["role"] == "tool":
                pending_tools.append(_flat(msg.get("content")))
                continue
            if pending_tools:
                turns.append(("tool", pending_tools))
                pending_tools = []
            content = msg.get("content")
            if isinstance(content, list):
                content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
            if msg["role"] in ("user", "assistant"):
                turns.append((msg["role"], content or ""))
        if pending_tools:
            turns.append(("tool", pending_tools))
        parts = self.brain.reply([t for t in turns if t[0] != "assistant"] or turns)
        wanted = (body.get("stream_options") or {}).get("include_usage")
        stream = self._openai_stream(body.get("model", "fake"), parts, usage_of(body, wanted))
        return StreamingResponse(
            _ended(_broken(stream, fault, 1), entry),
            media_type="text/event-stream",
        )

    async def _openai_stream(
        self, model: str, parts: list[tuple[Any, ...]], usage: tuple[int, int] | None
    ) -> AsyncIterator[bytes]:
        cid = f"chatcmpl-{next(_ids)}"
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            )

        yield chunk({"role": "assistant", "content": ""})
        tool_index = 0
        out_tokens = 0
        clock = [0.0]
        for part in parts:
            if part[0] in ("text", "stamped"):
                async for w in self._deltas(part):
                    out_tokens += 1
                    yield chunk({"content": w})
            else:
                _, name, args = part
                call = {"index": tool_index, "id": f"call_{next(_ids)}", "type": "function"}
                yield chunk({"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]})
                text = json.dumps(args)
                for k in range(0, len(text), 8):
                    await self._pace(clock)
                    out_tokens += 1
                    yield chunk(
                        {
                            "tool_calls": [
                                {"index": tool_index, "function": {"arguments": text[k : k + 8]}}
                            ]
                        }
                    )
                tool_index += 1
        yield chunk({}, "tool_calls" if tool_index else "stop")
        if usage is not None:
            tokens, cached = usage
            counts = {
                "prompt_tokens": tokens,
                "completion_tokens": out_tokens,
                "total_tokens": tokens + out_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            }
            yield _sse(None, {**base, "choices": [], "usage": counts})
        yield b"data: [DONE]\n\n"


def usage_of(body: dict[str, Any], wanted: Any = True) -> tuple[int, int] | None:
    """The input tokens a request is said to cost, and how many of them are cache reads:
    7 + 3 per message, 4 cached once there is more than one (None: not asked for)."""
    if not wanted:
        return None
    n = len(body.get("messages") or [])
    return 7 + 3 * n, (4 if n > 1 else 0)


def reported(entry: dict[str, Any], frame: bytes) -> None:
    """Note on the request's entry the usage a frame sent reports (`usage`: input, output
    and cache-read tokens as the provider's SDK adds them up)."""
    if b'"usage"' not in frame:
        return
    data = json.loads(frame.split(b"data: ", 1)[1])
    seen = entry.setdefault("usage", {"input": 0, "output": 0, "cache_read": 0})
    if data.get("type") == "message_start":
        u = data["message"]["usage"]
        seen["cache_read"] = u.get("cache_read_input_tokens", 0)
        seen["input"] = u["input_tokens"] + seen["cache_read"]
        seen["output"] = u["output_tokens"]
    elif data.get("type") == "message_delta":
        seen["output"] = data["usage"]["output_tokens"]
    else:
        u = data["usage"]
        seen["input"], seen["output"] = u["prompt_tokens"], u["completion_tokens"]
        seen["cache_read"] = u.get("prompt_tokens_details", {}).get("cached_tokens", 0)


async def _ended(stream: AsyncIterator[bytes], entry: dict[str, Any]) -> AsyncIterator[bytes]:
    """The stream, marking its request `ended` when it stops, whole or cut by its client."""
    try:
        async for frame in stream:
            reported(entry, frame)
            yield frame
    finally:
        entry["ended"] = True


async def _broken(
    stream: AsyncIterator[bytes], fault: dict[str, Any] | None, head: int
) -> AsyncIterator[bytes]:
    """The stream as a fault breaks it (`head`: the frames before the first delta)."""
    if not fault:
        async for frame in stream:
            yield frame
        return
    sent = 0
    async for frame in stream:
        if "trickle_s" in fault and sent >= head:
            break
        if "cut_after" in fault and sent >= head + int(fault["cut_after"]):
            return  # closed without the end marker
        sent += 1
        yield frame
    if "trickle_s" in fault:  # the first delta, again and again
        while True:
            yield frame
            await asyncio.sleep(float(fault["trickle_s"]))


def _flat(content: Any) -> str:
    if isinstance(content, list):
        return "".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return "" if content is None else str(content)


class RunningFakeLLM:
    """The fake server on a free loopback port, in a thread of this process."""

    def __init__(self, port: int) -> None:
        self.fake = FakeLLM()
        self.port = port
        config = uvicorn.Config(self.fake.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningFakeLLM:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


if __name__ == "__main__":
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8799
    uvicorn.run(FakeLLM().app, host="127.0.0.1", port=port, log_level="warning")
