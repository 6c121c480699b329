"""The demo model: a scripted, offline stand-in for an LLM (pydantic-ai's FunctionModel), so
that a first run shows every part of the product without an API key.

A `demo:guide` turn goes: a streamed markdown reply and three tool calls at once
(`list_files`, and two `delegate`s to `demo-helper`, which run as sub-agents); then, with
their results, a short reply and a `write_file` call (which asks the user first); then the
final answer, with a table and a code block. It runs through the same turn loop as a real
model: streamed into the log, checkpointed per call, resumable, stoppable.
`TETHER_DEMO_WORDS_PER_S` sets its pace (default 30 words a second).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

HELPER = "demo-helper"
QUESTIONS = (
    "Why does it matter that every event is written to a log before it is shown?",
    "What should a newcomer try next in Tether?",
)


def build(name: str) -> FunctionModel:
    fn = _helper if name == "helper" else _guide
    return FunctionModel(stream_function=fn, model_name=f"demo:{name}")


def _pace() -> float:
    try:
        rate = float(os.environ.get("TETHER_DEMO_WORDS_PER_S", "30"))
    except ValueError:
        rate = 30.0
    return 0.0 if rate <= 0 else 1.0 / rate


async def _words(text: str) -> AsyncIterator[str]:
    delay = _pace()
    parts = text.split(" ")
    for i, word in enumerate(parts):
        yield word if i == 0 else " " + word
        if delay:
            await asyncio.sleep(delay)


def _call(index: int, name: str, args: dict[str, Any]) -> DeltaToolCalls:
    call_id = f"demo_{secrets.token_hex(6)}"
    return {index: DeltaToolCall(name=name, json_args=json.dumps(args), tool_call_id=call_id)}


def _user_text(messages: list[ModelMessage]) -> str:
    for m in reversed(messages):
        if isinstance(m, ModelRequest):
            for p in m.parts:
                if isinstance(p, UserPromptPart) and isinstance(p.content, str):
                    return p.content
                if isinstance(p, UserPromptPart) and p.content and isinstance(p.content[0], str):
                    return p.content[0]  # the message's text, before its attachments
    return ""


def _quote(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _guide(messages: list[ModelMessage], _info: AgentInfo) -> AsyncIterator[Any]:
    last = messages[-1]
    returns = {
        p.tool_name: p
        for p in (last.parts if isinstance(last, ModelRequest) else [])
        if isinstance(p, ToolReturnPart)
    }
    said = _quote(_user_text(messages))
    if "write_file" in returns:
        denied = str(returns["write_file"].content).startswith("The user denied")
        async for w in _words(_final(denied)):
            yield w
    elif returns:
        async for w in _words(
            "Both helpers have answered, and the workspace listing is back. Now I would "
            "like to save a short note as `notes.md` in this session's workspace. **Writing "
            "a file needs your OK**: approve or deny it below."
        ):
            yield w
        note = f"# Notes from the demo\n\n- You said: {said}\n- Both sub-agents answered.\n"
        yield _call(1, "write_file", {"path": "notes.md", "content": note})
    else:
        async for w in _words(_intro(said)):
            yield w
        yield _call(1, "list_files", {})
        for i, question in enumerate(QUESTIONS):
            yield _call(2 + i, "delegate", {"agent": HELPER, "task": question})


def _intro(said: str) -> str:
    return (
        "## Welcome to Tether\n\n"
        f"I am a **scripted demo** that runs offline. You said: *{said}*\n\n"
        "Here is what happens next:\n\n"
        "1. I call a tool, `list_files`, in this session's workspace.\n"
        "2. I hand two questions to **sub-agents**; they work at the same time.\n"
        "3. I ask for your **approval** before I write a file.\n\n"
        "Close this tab whenever you like: the work goes on on the server, and the page "
        "picks up exactly where it left off."
    )


def _final(denied: bool) -> str:
    head = (
        "Understood: I did not write anything." if denied else "Saved `notes.md` in the workspace."
    )
    return (
        f"{head}\n\n### What you just saw\n\n"
        "| Part | What it shows |\n"
        "|---|---|\n"
        "| Streaming | each word was written to the session's log first, then shown |\n"
        "| Tool call | `list_files` ran on the server, as a checkpointed step |\n"
        "| Sub-agents | two helpers worked at once, each with its own status |\n"
        "| Approval | the turn waited for you, for as long as it took |\n\n"
        "An agent of your own is a Python function:\n\n"
        "```python\n"
        "from pydantic import BaseModel\n"
        "from tether import TaskContext, agent\n\n\n"
        "class Input(BaseModel):\n"
        "    urls: list[str]\n\n\n"
        '@agent("fetch_all", input=Input)\n'
        "async def fetch_all(ctx: TaskContext, inp: Input) -> list[dict]:\n"
        '    results = await ctx.gather(*(("item", {"item": u}) for u in inp.urls))\n'
        '    ctx.emit("fetched", {"count": len(results)})\n'
        "    return results\n"
        "```\n\n"
        "To talk to a real model, start the server with `ANTHROPIC_API_KEY` or "
        "`OPENAI_API_KEY` set, or `TETHER_MODEL_URL` pointing at a local OpenAI-compatible "
        "server. Try **Regenerate**, or edit your message, to see the conversation branch."
    )


async def _helper(messages: list[ModelMessage], _info: AgentInfo) -> AsyncIterator[str]:
    task = _user_text(messages)
    if task == QUESTIONS[0]:
        text = (
            "Because the log is the truth. A page that reloads, a phone that loses its signal "
            "or a second device reads the log from its last sequence number and sees **every "
            "event once, in order**: nothing lost, nothing shown twice."
        )
    else:
        text = (
            "Three things:\n\n- start a **batch** task from the Tasks panel and reload the page "
            "while it runs;\n- open this session on your phone;\n- stop a reply halfway, then "
            "**retry** it."
        )
    async for w in _words(text):
        yield w
