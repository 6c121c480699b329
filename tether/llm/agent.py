"""A model agent's turn: the agent loop, made durable on Tether's runtime.

One turn is one task. It waits for the turn before it (messages queue), reads the
conversation so far (a step), then loops: one model call is one checkpointed step that streams
its reply into the log; the tool calls the reply asks for run (each plain tool a step, each
`delegate` a child task, all delegations of one reply at once), and their results go back to
the model, until it answers without tools. A replay after a crash returns every finished
model call and tool call from its checkpoint, so none runs twice; the call in flight runs
again as a new attempt and supersedes what the old one had shown (`message.superseded`).

Why this loop is ours and the model layer is pydantic-ai's: pydantic-ai's direct API gives
one streaming interface over the providers' wire formats (Anthropic Messages, OpenAI Chat
Completions and every OpenAI-compatible server), with tool-call deltas and typed HTTP errors
carrying their headers. Its own agent loop, and its DBOS wrapper, run an agent as a workflow
of their own and run tool calls in concurrent tasks; Tether's tasks are already workflows,
whose child starts must replay in order and whose events are keyed per step, so the loop
around the model calls is written here, where those rules live.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from ag_ui import core as ag
from pydantic import BaseModel, ValidationError
from pydantic_ai.direct import model_request_stream
from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from tether.errors import DelegationFailed, ModelFailed
from tether.llm import approvals, conversation, history
from tether.llm.config import ModelAgentConfig, seconds
from tether.llm.installed import Installed, TurnInput
from tether.llm.mcp_servers import McpUnavailable, where
from tether.llm.stream import ReplyStream, emit_ag
from tether.llm.tools import (
    BUILTIN,
    DelegateArgs,
    ReadArgs,
    ToolEnv,
    ToolRefused,
    WriteArgs,
    check_path,
    write_preview,
)
from tether.quotas import limits, session_storage_full
from tether.runtime.context import Child, TaskContext
from tether.workspace import Workspace

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 300.0
# What a turn keeps: a tool's result (MCP included; the setting max_tool_result_chars) and
# a reply's text, each at most this many characters (the cut is said where it is); a turn's
# result holds its messages. A reply whole: max_saved_response_bytes.
MAX_REPLY_TEXT = 200 * 1024
# In place of a tool call's arguments that did not fit in the saved reply.
CUT_ARGS = "_tether_cut"


def build_model(cfg: ModelAgentConfig) -> Model:
    key = cfg.api_key()
    if key is None:
        raise ModelFailed(f"agent {cfg.name!r} cannot call its model: {cfg.problem()}")
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


@dataclass(slots=True)
class _Deadline:
    """When the turn must have answered (wall-clock, recorded in a step: a replay after a
    restart keeps it); time spent waiting for a person is added to it."""

    at: float
    cfg: ModelAgentConfig

    def left(self) -> float:
        return self.at - time.time()

    def passed(self, last: str | None = None) -> ModelFailed:
        why = f" (the last model call: {last})" if last else ""
        return ModelFailed(
            f"the turn took longer than {seconds(self.cfg.turn_timeout_s)}, the limit for agent "
            f"{self.cfg.name!r} (turn_timeout_s), and was stopped{why}. Send the message again "
            "to retry; the limit is set in the agents file."
        )


class _CallTimedOut(Exception):
    """The model call ran past call_timeout_s (a stalled or trickling stream)."""


class _StreamCut(Exception):
    """The reply's stream ended without the provider's end marker: the call broke off."""


# -- the turn -------------------------------------------------------------------------------


def _dump(messages: list[ModelMessage]) -> list[Any]:
    return ModelMessagesTypeAdapter.dump_python(messages, mode="json")


async def run_turn(
    ctx: TaskContext, inst: Installed, cfg: ModelAgentConfig, inp: TurnInput
) -> dict[str, Any]:
    if ctx.task.parent_id is None:
        # One turn at a time per session, in the order sent: wait for every turn created
        # before this one (the database's order, so it holds across processes).
        before = await ctx.step(
            lambda: conversation.queue(
                inst.store.db, ctx.session_id, ctx.task_id, list(inst.configs)
            ),
            name="queue",
        )
        if before:
            ctx.emit("turn.waiting", {"after": before[-1]})
            for turn in before:
                await ctx.wait_for(turn)

    async def branch() -> list[str]:
        """The turns this one answers after, as ids: the branch it follows (a sub-agent
        sees only its task). The messages are read from those finished turns' rows."""
        if ctx.task.parent_id is not None:
            return []
        turns = await conversation.read_tree(inst.store.db, ctx.session_id, list(inst.configs))
        return conversation.branch(
            turns, next((t.follows for t in turns if t.id == ctx.task_id), None)
        )

    deadline = _Deadline(
        await ctx.step(lambda: time.time() + cfg.turn_timeout_s, name="turn.deadline"), cfg
    )
    past = history.Past(inst.store.db, ctx.session_id, await ctx.step(branch, name="history"))
    emit_ag(ctx, ag.RunStartedEvent(thread_id=ctx.session_id, run_id=ctx.task_id))
    # The MCP servers' tools, as this turn first saw them (a replay sees the same list).
    mcp_tools: list[dict[str, Any]] = []
    if cfg.mcp:
        try:
            mcp_tools = await ctx.step(
                lambda: _list_mcp(inst, cfg, ctx.session_id), name="mcp.tools"
            )
        except ModelFailed as exc:  # shown in the chat, as a model call's failure is
            emit_ag(ctx, ag.RunErrorEvent(message=str(exc)))
            raise
    own: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content=inp.text)], instructions=cfg.system)
    ]
    tools = _tool_defs(cfg, inst, mcp_tools)
    mcp_of = {t["name"]: t for t in mcp_tools}
    budget = (
        cfg.context_tokens
        - cfg.max_tokens
        - history.tokens(cfg.system)
        - sum(
            history.tokens(t.parameters_json_schema) + history.tokens(t.description) for t in tools
        )
    )
    told: tuple[Any, ...] = (None, 0, 0)
    response: ModelResponse | None = None
    try:
        for _ in range(cfg.max_rounds):
            fitted = await history.fit(past, own, budget)
            cut = (fitted.first, fitted.dropped, fitted.shortened)
            if cut != told and (fitted.dropped or fitted.shortened):
                ctx.emit(
                    "context.trimmed",
                    {
                        "first": fitted.first or ctx.task_id,
                        "dropped": fitted.dropped,
                        "shortened": fitted.shortened,
                    },
                )
                told = cut
            if (full := await session_storage_full(inst.store.db, ctx.session_id)) is not None:
                raise ModelFailed(f"the turn stops here: {full}")
            raw = await ctx.step(
                lambda m=fitted.messages: _call_model(ctx, inst, cfg, m, tools, deadline),
                name="model",
            )
            response = ModelMessagesTypeAdapter.validate_python([raw])[0]
            assert isinstance(response, ModelResponse)
            own.append(response)
            calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
            if not calls:
                break
            parts = await _run_tools(ctx, inst, cfg, calls, mcp_of, deadline)
            own.append(ModelRequest(parts=parts, instructions=cfg.system))
        else:
            raise ModelFailed(
                f"the agent made {cfg.max_rounds} model calls (max_rounds) and was still "
                "calling tools; the turn stops here"
            )
    except ModelFailed as exc:
        emit_ag(ctx, ag.RunErrorEvent(message=str(exc)))
        raise
    text = _text_of(response)
    emit_ag(ctx, ag.RunFinishedEvent(thread_id=ctx.session_id, run_id=ctx.task_id))
    room = ctx.max_event_bytes - len(text.encode()) - 4096
    return {"text": text, "messages": _history_of(own, room)}


def _history_of(turn: list[ModelMessage], budget: int) -> list[Any]:
    """The turn's messages as later turns will see them, within `budget` bytes (they are
    kept in the turn's result, which the log bounds): long tool results are cut, then cut
    short, and at worst only the user's message and the final answer are kept."""
    for keep in (16_384, 1024):
        cut = [_cut_tool_results(m, keep) for m in turn]
        data = _dump(cut)
        if len(json.dumps(data)) <= budget:
            return data
    return _dump([turn[0], turn[-1]] if len(turn) > 1 else turn)


def _cut_tool_results(message: ModelMessage, keep: int) -> ModelMessage:
    if not isinstance(message, ModelRequest):
        return message
    parts = []
    for p in message.parts:
        if isinstance(p, ToolReturnPart) and isinstance(p.content, str) and len(p.content) > keep:
            more = len(p.content) - keep
            p = dataclasses.replace(p, content=f"{p.content[:keep]}… ({more} characters cut here)")
        parts.append(p)
    return dataclasses.replace(message, parts=parts)


def _text_of(response: ModelResponse | None) -> str:
    if response is None:
        return ""
    return "".join(p.content for p in response.parts if isinstance(p, TextPart))


def bounded(text: str, limit: int, what: str) -> str:
    """Text of at most about `limit` characters; a cut says how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} characters of {what} cut: Tether keeps {limit // 1024} KiB)"


def _bounded_response(response: ModelResponse, limit: int) -> ModelResponse:
    """The reply as it is saved (and sent back to the model): within about `limit` bytes.
    A tool call whose arguments do not fit keeps, instead of them, why (the call is then
    refused to the model, saying so)."""
    parts = []
    room = limit
    for p in response.parts:
        if isinstance(p, TextPart):
            keep = min(MAX_REPLY_TEXT, max(room, 1024))
            if len(p.content) > keep:
                p = dataclasses.replace(p, content=bounded(p.content, keep, "this reply"))
            room -= len(p.content.encode())
        elif isinstance(p, ToolCallPart):
            size = _args_size(p.args)
            if size > room:
                why = (
                    f"the arguments of this call ({size:,} bytes) did not fit in what a reply "
                    f"may hold (max_saved_response_bytes = {limit:,} bytes, the reply's other "
                    "parts included): make smaller calls, e.g. write a file in parts"
                )
                p = dataclasses.replace(p, args={CUT_ARGS: why})
                size = len(why)
            room -= size
        parts.append(p)
    return dataclasses.replace(response, parts=parts)


def _args_size(args: Any) -> int:
    if args is None:
        return 0
    return len(args.encode() if isinstance(args, str) else json.dumps(args).encode())


def _event_size(event: Any) -> int:
    """About how many bytes a streamed event adds to the reply."""
    if isinstance(event, PartStartEvent):
        part = event.part
        if isinstance(part, TextPart):
            return len(part.content.encode())
        return _args_size(part.args) if isinstance(part, ToolCallPart) else 0
    if isinstance(event, PartDeltaEvent):
        delta: Any = event.delta
        text = getattr(delta, "content_delta", None)
        if isinstance(text, str):
            return len(text.encode())
        return _args_size(getattr(delta, "args_delta", None))
    return 0


async def _list_mcp(
    inst: Installed, cfg: ModelAgentConfig, session_id: str
) -> list[dict[str, Any]]:
    """Every tool of the agent's MCP servers. A name the agent has already (a built-in tool,
    or another server's) gets its server's number in front."""
    taken = set(cfg.tools) | {"delegate"}
    out: list[dict[str, Any]] = []
    for i, ref in enumerate(cfg.mcp):
        try:
            listed = await inst.mcp.list_tools(session_id, ref, cfg.mcp_timeout_s)
        except McpUnavailable as exc:
            raise ModelFailed(f"the agent's tools could not be listed: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a server that is down fails the turn, saying which
            raise ModelFailed(
                f"the MCP server {where(ref)} did not list its tools: {exc!r}"
            ) from None
        for tool in listed:
            name = tool.name if tool.name not in taken else f"mcp{i}_{tool.name}"
            taken.add(name)
            out.append(
                {
                    "name": name,
                    "server": i,
                    "tool": tool.name,
                    "description": tool.description or "",
                    "schema": tool.input_schema or {"type": "object"},
                }
            )
    return out


def _tool_defs(
    cfg: ModelAgentConfig, inst: Installed, mcp_tools: list[dict[str, Any]]
) -> list[ToolDefinition]:
    defs = [
        ToolDefinition(
            name=t.name,
            description=t.description,
            parameters_json_schema=t.args.model_json_schema(),
        )
        for t in (BUILTIN[name] for name in cfg.tools)
    ]
    if cfg.delegates:
        helpers = "; ".join(
            f"{d}: {inst.configs[d].description or inst.configs[d].system[:200]}"
            for d in cfg.delegates
        )
        schema = DelegateArgs.model_json_schema()
        schema["properties"]["agent"]["enum"] = list(cfg.delegates)
        defs.append(
            ToolDefinition(
                name="delegate",
                description="Hand a task to a sub-agent and get its answer. Several calls in "
                f"one reply run at once. Agents: {helpers}",
                parameters_json_schema=schema,
            )
        )
    defs.extend(
        ToolDefinition(
            name=t["name"], description=t["description"], parameters_json_schema=t["schema"]
        )
        for t in mcp_tools
    )
    return defs


# -- one model call ---------------------------------------------------------------------------


async def _call_model(
    ctx: TaskContext,
    inst: Installed,
    cfg: ModelAgentConfig,
    messages: list[ModelMessage],
    tools: list[ToolDefinition],
    deadline: _Deadline,
) -> Any:
    """One model call, streamed into the log; retried (as new attempts) on rate limits,
    overload and network errors, on a stream cut before its end marker, and on an attempt
    that takes longer than call_timeout_s; a hard error raises ModelFailed with the
    provider's words, and so does the turn's deadline."""
    model = inst.model(cfg)
    params = ModelRequestParameters(function_tools=tools)
    settings: Any = {"max_retries": 0, "max_tokens": cfg.max_tokens}
    retries = 0
    broke_off: str | None = None  # why the last attempt stopped mid-reply
    while True:
        attempt, prior = await ctx.new_attempt()
        _supersede(
            ctx,
            prior,
            broke_off or "the server restarted while this reply was being written",
        )
        reply = ReplyStream(ctx, f"m-{ctx.task_id}.s{ctx.step_id}.a{attempt}")
        left = deadline.left()
        if left <= 0:
            raise deadline.passed()
        limit = asyncio.timeout(min(cfg.call_timeout_s, left))
        try:
            max_bytes, size, cut = limits().max_saved_response_bytes, 0, False
            try:
                async with limit:
                    async with model_request_stream(
                        model, messages, model_settings=settings, model_request_parameters=params
                    ) as stream:
                        async for event in stream:
                            reply.feed(event)
                            size += _event_size(event)
                            if size > max_bytes:
                                cut = True
                                break  # cut here: the rest is neither read nor kept
                        response = stream.get()
            except TimeoutError:
                if not limit.expired():
                    raise
                if cfg.call_timeout_s >= left:
                    raise deadline.passed() from None
                raise _CallTimedOut(
                    f"{cfg.model} did not finish its reply within "
                    f"{seconds(cfg.call_timeout_s)} (call_timeout_s)"
                ) from None
            # A reply cut at max_saved_response_bytes ends without its end marker too.
            if cfg.stream_end_required and response.state == "incomplete" and not cut:
                raise _StreamCut(
                    f"the reply from {cfg.model} broke off: its stream ended without the "
                    "provider's end marker"
                )
            reply.close()
            saved = _bounded_response(response, max_bytes)
            return ModelMessagesTypeAdapter.dump_python([saved], mode="json")[0]
        except ModelFailed:
            reply.close()
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into retry or failure below
            reply.close()
            delay, status = _retry_delay(exc, retries)
            reason = _describe(exc, cfg)
            if delay is None or retries >= cfg.max_retries:
                log.info("task %s: model call failed: %s", ctx.task_id, reason)
                raise ModelFailed(reason) from None
            if delay >= deadline.left():
                raise deadline.passed(reason) from None
            retries += 1
            broke_off = (
                None
                if not (reply.message_ids or reply.tool_call_ids)
                else f"the model took longer than {seconds(cfg.call_timeout_s)} (call_timeout_s)"
                if isinstance(exc, _CallTimedOut)
                else "the connection to the model broke off mid-reply"
            )
            ctx.emit(
                "model.retry",
                {
                    "retry": retries,
                    "of": cfg.max_retries,
                    "delay_s": round(delay, 3),
                    "status": status,
                    "reason": reason,
                },
            )
            await ctx.flush()
            await asyncio.sleep(delay)
        finally:
            reply.abort()


def _supersede(ctx: TaskContext, prior: list[Any], reason: str) -> None:
    """Say that what earlier attempts of this call showed is void (it was never answered)."""
    messages: list[str] = []
    calls: list[str] = []
    gone: set[str] = set()
    for ev in prior:
        data = json.loads(ev.data)
        if ev.type == "TEXT_MESSAGE_START":
            messages.append(data["messageId"])
        elif ev.type == "TOOL_CALL_START":
            calls.append(data["toolCallId"])
        elif ev.type == "message.superseded":
            gone.update(data["messageIds"] + data["toolCallIds"])
    messages = [m for m in messages if m not in gone]
    calls = [c for c in calls if c not in gone]
    if messages or calls:
        ctx.emit(
            "message.superseded",
            {
                "messageIds": messages,
                "toolCallIds": calls,
                "reason": reason + "; it is written again",
            },
        )


def _retry_delay(exc: BaseException, retries: int) -> tuple[float | None, int | None]:
    backoff = random.uniform(0.5, min(30.0, 2.0 ** (retries + 1)))  # full jitter
    if isinstance(exc, ModelHTTPError):
        if exc.status_code not in RETRY_STATUS:
            return None, exc.status_code
        after = _retry_after((exc.headers or {}).get("retry-after"))
        return (backoff if after is None else after), exc.status_code
    if isinstance(exc, ModelAPIError | OSError | asyncio.TimeoutError | _CallTimedOut | _StreamCut):
        return backoff, None  # the network: refused, reset, timed out, cut
    return None, None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), MAX_RETRY_AFTER)


def _describe(exc: BaseException, cfg: ModelAgentConfig) -> str:
    if isinstance(exc, ModelHTTPError):
        body = exc.body
        message = None
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else None
        return (
            f"{cfg.provider} answered HTTP {exc.status_code} for {cfg.model_name}: "
            f"{message or body or exc}"
        )
    if isinstance(exc, _CallTimedOut | _StreamCut):
        return str(exc)
    return f"calling {cfg.model} failed: {exc}"


# -- tools ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    index: int
    part: ToolCallPart
    args: Any = None


async def _run_tools(
    ctx: TaskContext,
    inst: Installed,
    cfg: ModelAgentConfig,
    calls: list[ToolCallPart],
    mcp_of: dict[str, dict[str, Any]],
    deadline: _Deadline,
) -> list[Any]:
    """Run the tool calls of one reply. Order of what is durable is fixed, so a replay repeats
    it: approvals asked (all, so a person sees every one at once), then answered in order;
    then every delegation started; then plain tools, one step each; then delegations awaited
    together."""
    out: dict[int, Any] = {}
    todo: list[_Call] = []
    env = ToolEnv(cfg, Workspace(inst.store.db, ctx.session_id))
    most, delegations = limits().max_delegations_per_reply, 0
    for i, part in enumerate(calls):
        try:
            if part.tool_name == "delegate":
                delegations += 1
                if most and delegations > most:
                    raise ToolRefused(
                        f"not started: a reply may delegate {most} tasks at most "
                        f"(max_delegations_per_reply); this was call {delegations}. Wait for "
                        "these answers, then delegate the rest in a later reply"
                    )
            todo.append(_Call(i, part, _validate(cfg, env, part, mcp_of)))
        except ToolRefused as exc:
            out[i] = RetryPromptPart(
                content=str(exc), tool_name=part.tool_name, tool_call_id=part.tool_call_id
            )

    asking = [c for c in todo if cfg.needs_approval(c.part.tool_name)]
    ids = {}

    async def ask(c: _Call) -> str:
        return await approvals.request(ctx, inst.store, c.part, c.args, await _preview(env, c))

    for c in asking:
        ids[c.index] = await ctx.step(lambda c=c: ask(c), name="approval")
    if asking:
        # The requests are committed before the task waits (DBOS records its waits on its
        # own: they must not land before the steps that come before them).
        await ctx.flush()
        asked = await ctx.step(time.time, name="approval.asked")
    for c in asking:
        answer = await approvals.wait(ids[c.index])
        ctx.emit(
            "approval.answered",
            {"approvalId": ids[c.index], "toolCallId": c.part.tool_call_id, **answer},
        )
        if answer["decision"] != "approve":
            note = f" Their note: {answer['note']}" if answer.get("note") else ""
            out[c.index] = _result(ctx, c.part, f"The user denied this tool call.{note}")
    if asking:  # a person's time is not the turn's
        deadline.at += await ctx.step(time.time, name="approval.answered") - asked
    todo = [c for c in todo if c.index not in out]

    children: dict[int, Child] = {}
    for c in todo:
        if c.part.tool_name == "delegate":
            children[c.index] = await ctx.start(
                c.args.agent, {"text": c.args.task, "tool_call_id": c.part.tool_call_id}
            )
    for c in todo:
        if c.part.tool_name != "delegate":
            text = await ctx.step(
                lambda c=c: _run_tool(inst, env, c, mcp_of, ctx.session_id),
                name=f"tool.{c.part.tool_name}",
            )
            out[c.index] = _result(ctx, c.part, text)
    results = await asyncio.gather(
        *(ch.result() for ch in children.values()), return_exceptions=True
    )
    for (i, child), res in zip(children.items(), results, strict=True):
        if isinstance(res, DelegationFailed):
            text = f"The sub-agent ({child.task_id}) failed: {_error_text(res.error)}"
        elif isinstance(res, BaseException):
            raise res
        else:
            text = bounded(str((res or {}).get("text", "")), _tool_limit(), "this answer")
        out[i] = _result(ctx, calls[i], text)
    return [out[i] for i in range(len(calls))]


async def _preview(env: ToolEnv, c: _Call) -> dict[str, Any]:
    if c.part.tool_name == "write_file" and isinstance(c.args, WriteArgs):
        return await write_preview(env, c.args)
    return {}


def _validate(
    cfg: ModelAgentConfig, env: ToolEnv, part: ToolCallPart, mcp_of: dict[str, Any]
) -> Any:
    name = part.tool_name
    if isinstance(part.args, dict) and CUT_ARGS in part.args:
        raise ToolRefused(str(part.args[CUT_ARGS]))
    if name in mcp_of:  # the server checks its own arguments
        try:
            return part.args_as_dict()
        except ValueError as exc:
            raise ToolRefused(f"the arguments for {name} are not a JSON object: {exc}") from None
    if name == "delegate" and cfg.delegates:
        model: type[BaseModel] = DelegateArgs
    elif name in cfg.tools:
        model = BUILTIN[name].args
    else:
        raise ToolRefused(f"there is no tool {name!r}")
    try:
        args = model.model_validate(part.args_as_dict())
    except (ValidationError, ValueError) as exc:
        raise ToolRefused(f"the arguments for {name} are invalid: {exc}") from None
    if name == "delegate" and args.agent not in cfg.delegates:
        raise ToolRefused(f"cannot delegate to {args.agent!r}; choose one of {cfg.delegates}")
    if isinstance(args, ReadArgs | WriteArgs):
        check_path(args.path)  # refused now, before anyone is asked to approve it
    return args


async def _run_tool(
    inst: Installed, env: ToolEnv, c: _Call, mcp_of: dict[str, Any], session_id: str
) -> str:
    """A plain tool's result as text; its failure is the model's to read, not the turn's."""
    mcp = mcp_of.get(c.part.tool_name)
    try:
        if mcp is None:
            text = await BUILTIN[c.part.tool_name].run(env, c.args)
            return bounded(text, _tool_limit(), "this result")
        server = env.config.mcp[mcp["server"]]
        out = await inst.mcp.call_tool(
            session_id, server, mcp["tool"], c.args, env.config.mcp_timeout_s
        )
    except ToolRefused as exc:
        return f"Error: {exc}"
    except Exception as exc:  # noqa: BLE001 - an MCP tool's error (ModelRetry, its own)
        text = f"Error: the tool {c.part.tool_name} failed: {exc}"
        return bounded(text, _tool_limit(), "this error")
    text = out if isinstance(out, str) else json.dumps(out, default=str)
    return bounded(text, _tool_limit(), "this result")


def _tool_limit() -> int:
    return limits().max_tool_result_chars


def _result(ctx: TaskContext, part: ToolCallPart, text: str) -> ToolReturnPart:
    msg_id = "tr-" + hashlib.sha256(f"{ctx.task_id}:{part.tool_call_id}".encode()).hexdigest()[:16]
    emit_ag(
        ctx,
        ag.ToolCallResultEvent(
            message_id=msg_id, tool_call_id=part.tool_call_id, content=text[:20_000], role="tool"
        ),
    )
    return ToolReturnPart(tool_name=part.tool_name, content=text, tool_call_id=part.tool_call_id)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or error)
    return str(error)
