"""A turn's tools as its model sees them, and one tool call checked, run and answered.

The tools a model is offered are the agent's built-in tools, `delegate` (when it has
sub-agents) and its MCP servers' tools. A plain tool's failure is the model's to read, not
the turn's; every result is cut to `max_tool_result_chars`. Which of a reply's calls run,
and in what order, is `turn.py`'s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ag_ui import core as ag
from pydantic_ai.messages import ToolCallPart, ToolReturnPart
from pydantic_ai.tools import ToolDefinition

from tether.errors import ModelFailed
from tether.llm.config import ModelAgentConfig
from tether.llm.installed import Installed
from tether.llm.mcp_servers import McpUnavailable, where
from tether.llm.reply import bounded
from tether.llm.stream import emit_ag
from tether.llm.tools import BUILTIN, DelegateArgs, ToolEnv, ToolRefused, WriteArgs, write_preview
from tether.quotas import limits
from tether.runtime.context import TaskContext


async def list_mcp(inst: Installed, cfg: ModelAgentConfig, session_id: str) -> list[dict[str, Any]]:
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


def tool_defs(
    cfg: ModelAgentConfig, inst: Installed, mcp_tools: list[dict[str, Any]]
) -> list[ToolDefinition]:
    """The tools the model is offered: built-in, `delegate`, then the MCP servers'."""
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


@dataclass(slots=True)
class Call:
    """One tool call of a reply: its place in the reply, the part, its checked arguments."""

    index: int
    part: ToolCallPart
    args: Any = None


async def preview(env: ToolEnv, c: Call) -> dict[str, Any]:
    """What a person asked to approve the call sees besides its arguments."""
    if c.part.tool_name == "write_file" and isinstance(c.args, WriteArgs):
        return await write_preview(env, c.args)
    return {}


async def run_tool(
    inst: Installed, env: ToolEnv, c: Call, mcp_of: dict[str, Any], session_id: str
) -> str:
    """A plain tool's result as text; its failure is the model's to read, not the turn's."""
    mcp = mcp_of.get(c.part.tool_name)
    try:
        if mcp is None:
            text = await BUILTIN[c.part.tool_name].run(env, c.args)
            return bounded(text, tool_limit(), "this result")
        server = env.config.mcp[mcp["server"]]
        out = await inst.mcp.call_tool(
            session_id, server, mcp["tool"], c.args, env.config.mcp_timeout_s
        )
    except ToolRefused as exc:
        return f"Error: {exc}"
    except Exception as exc:  # noqa: BLE001 - an MCP tool's error (ModelRetry, its own)
        text = f"Error: the tool {c.part.tool_name} failed: {exc}"
        return bounded(text, tool_limit(), "this error")
    text = out if isinstance(out, str) else json.dumps(out, default=str)
    return bounded(text, tool_limit(), "this result")


def tool_limit() -> int:
    return limits().max_tool_result_chars


def result(ctx: TaskContext, part: ToolCallPart, text: str) -> ToolReturnPart:
    """The call's result for the model, shown in the log as it is returned."""
    msg_id = "tr-" + hashlib.sha256(f"{ctx.task_id}:{part.tool_call_id}".encode()).hexdigest()[:16]
    emit_ag(
        ctx,
        ag.ToolCallResultEvent(
            message_id=msg_id, tool_call_id=part.tool_call_id, content=text[:20_000], role="tool"
        ),
    )
    return ToolReturnPart(tool_name=part.tool_name, content=text, tool_call_id=part.tool_call_id)


def error_text(error: Any) -> str:
    """A failed sub-agent's error as the model reads it."""
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or error)
    return str(error)
