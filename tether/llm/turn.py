"""A model agent's turn: the model loop, made durable on Tether's runtime.

One turn is one task. It waits for the turn before it (messages queue), reads the
conversation so far (a step), then loops: one model call is one checkpointed step that streams
its reply into the log; the tool calls the reply asks for run (each plain tool a step, each
`delegate` a child task, all delegations of one reply at once), and their results go back to
the model, until it answers without tools. A replay after a crash returns every finished
model call and tool call from its checkpoint, so none runs twice; the call in flight runs
again as a new attempt and supersedes what the old one had shown (`message.superseded`).

This module decides which durable steps a turn takes and in what order (so it also holds
`validate`, which decides which tool calls run): the code version hashes its source, and a
change here interrupts turns left running by the old code instead of replaying them. The
parts are elsewhere: one model call in `model_call.py`, one tool call in `tool_calls.py`,
what the turn keeps in `reply.py`, what it sends in `history.py`.

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
import time
from typing import Any

from ag_ui import core as ag
from pydantic import BaseModel, ValidationError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    RetryPromptPart,
    ToolCallPart,
    UserPromptPart,
)

from tether.errors import DelegationFailed, ModelFailed
from tether.llm import approvals, attached, conversation, history
from tether.llm.config import ModelAgentConfig
from tether.llm.installed import Installed, TurnInput
from tether.llm.model_call import Deadline, call_model
from tether.llm.reply import CUT_ARGS, bounded, history_of, text_of
from tether.llm.stream import emit_ag
from tether.llm.tool_calls import (
    Call,
    error_text,
    list_mcp,
    preview,
    result,
    run_tool,
    tool_defs,
    tool_limit,
)
from tether.llm.tools import (
    BUILTIN,
    DelegateArgs,
    ReadArgs,
    ToolEnv,
    ToolRefused,
    WriteArgs,
    check_path,
)
from tether.quotas import limits, session_storage_full
from tether.runtime.context import Child, TaskContext
from tether.workspace import Workspace


async def run_turn(
    ctx: TaskContext, inst: Installed, cfg: ModelAgentConfig, inp: TurnInput
) -> dict[str, Any]:
    """Answer the turn's message: its text and its messages, as later turns will read them.
    Raises ModelFailed (shown in the chat) when the turn cannot be answered."""
    if ctx.task.parent_id is None:
        # One turn at a time per session, in the order sent: wait for every turn created
        # before this one (the database's order, so it holds across processes).
        before: list[str] = await ctx.step(
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

    deadline = Deadline(
        await ctx.step(lambda: time.time() + cfg.turn_timeout_s, name="turn.deadline"), cfg
    )
    past = history.Past(inst.store.db, ctx.session_id, await ctx.step(branch, name="history"))
    emit_ag(ctx, ag.RunStartedEvent(thread_id=ctx.session_id, run_id=ctx.task_id))
    # The MCP servers' tools, as this turn first saw them (a replay sees the same list).
    mcp_tools: list[dict[str, Any]] = []
    if cfg.mcp:
        try:
            mcp_tools = await ctx.step(
                lambda: list_mcp(inst, cfg, ctx.session_id), name="mcp.tools"
            )
        except ModelFailed as exc:  # shown in the chat, as a model call's failure is
            emit_ag(ctx, ag.RunErrorEvent(message=str(exc)))
            raise
    ws = Workspace(inst.store.db, ctx.session_id)
    said = await attached.prompt(
        ws, inp.text, inp.attachments, cfg, limits().attachment_inline_chars
    )
    own: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content=said)], instructions=cfg.system)
    ]
    tools = tool_defs(cfg, inst, mcp_tools)
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
                lambda m=fitted.messages: call_model(ctx, inst, cfg, m, tools, deadline),
                name="model",
            )
            reply = ModelMessagesTypeAdapter.validate_python([raw])[0]
            assert isinstance(reply, ModelResponse)
            response = reply
            own.append(response)
            calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
            if not calls:
                break
            parts = await run_tools(ctx, inst, cfg, calls, mcp_of, deadline)
            own.append(ModelRequest(parts=parts, instructions=cfg.system))
        else:
            raise ModelFailed(
                f"the agent made {cfg.max_rounds} model calls (max_rounds) and was still "
                "calling tools; the turn stops here"
            )
    except ModelFailed as exc:
        emit_ag(ctx, ag.RunErrorEvent(message=str(exc)))
        raise
    text = text_of(response)
    emit_ag(ctx, ag.RunFinishedEvent(thread_id=ctx.session_id, run_id=ctx.task_id))
    room = ctx.max_event_bytes - len(text.encode()) - 4096
    if inp.attachments:  # later turns are sent a mention of the files, not the files
        said = attached.mentioned(inp.text, inp.attachments)
        own[0] = ModelRequest(parts=[UserPromptPart(content=said)], instructions=cfg.system)
    return {"text": text, "messages": history_of(own, room)}


async def run_tools(
    ctx: TaskContext,
    inst: Installed,
    cfg: ModelAgentConfig,
    calls: list[ToolCallPart],
    mcp_of: dict[str, dict[str, Any]],
    deadline: Deadline,
) -> list[ModelRequestPart]:
    """Run the tool calls of one reply. Order of what is durable is fixed, so a replay repeats
    it: approvals asked (all, so a person sees every one at once), then answered in order;
    then every delegation started; then plain tools, one step each; then delegations awaited
    together."""
    out: dict[int, ModelRequestPart] = {}
    todo: list[Call] = []
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
            todo.append(Call(i, part, validate(cfg, env, part, mcp_of)))
        except ToolRefused as exc:
            out[i] = RetryPromptPart(
                content=str(exc), tool_name=part.tool_name, tool_call_id=part.tool_call_id
            )

    asking = [c for c in todo if cfg.needs_approval(c.part.tool_name)]
    ids: dict[int, str] = {}

    async def ask(c: Call) -> str:
        return await approvals.request(ctx, inst.store, c.part, c.args, await preview(env, c))

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
            out[c.index] = result(ctx, c.part, f"The user denied this tool call.{note}")
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
            text: str = await ctx.step(
                lambda c=c: run_tool(inst, env, c, mcp_of, ctx.session_id),
                name=f"tool.{c.part.tool_name}",
            )
            out[c.index] = result(ctx, c.part, text)
    results = await asyncio.gather(
        *(ch.result() for ch in children.values()), return_exceptions=True
    )
    for (i, child), res in zip(children.items(), results, strict=True):
        if isinstance(res, DelegationFailed):
            text = f"The sub-agent ({child.task_id}) failed: {error_text(res.error)}"
        elif isinstance(res, BaseException):
            raise res
        else:
            text = bounded(str((res or {}).get("text", "")), tool_limit(), "this answer")
        out[i] = result(ctx, calls[i], text)
    return [out[i] for i in range(len(calls))]


def validate(
    cfg: ModelAgentConfig, env: ToolEnv, part: ToolCallPart, mcp_of: dict[str, Any]
) -> Any:
    """The call's arguments, checked (an MCP tool's as a JSON object: its server checks
    them); raises ToolRefused, saying why, for a call that must not run."""
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
    if isinstance(args, DelegateArgs) and args.agent not in cfg.delegates:
        raise ToolRefused(f"cannot delegate to {args.agent!r}; choose one of {cfg.delegates}")
    if isinstance(args, ReadArgs | WriteArgs):
        check_path(args.path)  # refused now, before anyone is asked to approve it
    return args
