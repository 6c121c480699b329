"""One model call: streamed into the log, retried, bounded in time and in size.

A call is one checkpointed step of a turn. Each attempt streams the reply into the log as
it comes (`stream.ReplyStream`); an attempt that fails on a rate limit, an overload or the
network, whose stream is cut before the provider's end marker, or that runs past
`call_timeout_s`, is tried again as a new attempt (after a backoff, or the server's
Retry-After), and what it had shown is superseded (`message.superseded`). A hard error
raises ModelFailed with the provider's words; so does the turn's deadline (`Deadline`).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.messages import ModelMessage
from pydantic_ai.tools import ToolDefinition

from tether.errors import ModelFailed
from tether.llm.attempt import Request, StreamCut, stream_reply
from tether.llm.config import ModelAgentConfig, seconds
from tether.llm.installed import Installed
from tether.llm.spend import before_call, usage_data
from tether.llm.stream import ReplyStream
from tether.model import Event
from tether.quotas import limits
from tether.runtime.context import TaskContext
from tether.usage import EVENT as USAGE_EVENT

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 300.0


@dataclass(slots=True)
class Deadline:
    """When the turn must have answered (wall-clock, recorded in a step: a replay after a
    restart keeps it); time spent waiting for a person, or for a model process to start, is
    added to it."""

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


class Shown:
    """A call's events on their way to the log, noting whether it started showing a reply
    (a message or a tool call) that a retry must supersede, and what it left open. The
    attempt's token counts are priced on their way (`priced`)."""

    __slots__ = ("ctx", "open", "priced", "started")

    def __init__(self, ctx: TaskContext, priced: Callable[[Any], Any]) -> None:
        self.ctx, self.started, self.priced = ctx, False, priced
        self.open: dict[str, str] = {}  # id -> its END event's type

    def emit(self, type: str, data: Any = None) -> None:
        if type == USAGE_EVENT:
            data = self.priced(data)
        elif type == "TEXT_MESSAGE_START":
            self.started = True
            self.open[data["messageId"]] = "TEXT_MESSAGE_END"
        elif type == "TOOL_CALL_START":
            self.started = True
            self.open[data["toolCallId"]] = "TOOL_CALL_END"
        elif type in ("TEXT_MESSAGE_END", "TOOL_CALL_END"):
            self.open.pop(data.get("messageId") or data.get("toolCallId"), None)
        self.ctx.emit(type, data)

    def close(self) -> None:
        """End what a lost model process left open, as a broken stream's parts are ended
        (what was shown stays until a `message.superseded` replaces it)."""
        for part_id, end in list(self.open.items()):
            key = "messageId" if end == "TEXT_MESSAGE_END" else "toolCallId"
            self.emit(end, {key: part_id})


class CallTimedOut(Exception):
    """The model call ran past call_timeout_s (a stalled or trickling stream)."""


async def call_model(
    ctx: TaskContext,
    inst: Installed,
    cfg: ModelAgentConfig,
    messages: list[ModelMessage],
    tools: list[ToolDefinition],
    deadline: Deadline,
) -> Any:
    """One model call, streamed into the log; retried (as new attempts) on rate limits,
    overload and network errors, on a stream cut before its end marker, and on an attempt
    that takes longer than call_timeout_s; a hard error raises ModelFailed with the
    provider's words, and so does the turn's deadline. Returns the reply as saved (JSON)."""
    procs = inst.processes()
    model = inst.model(cfg) if procs is None else None
    if procs is not None:
        inst.check(cfg)  # as building the model would: a missing key fails the turn here
    retries = 0
    broke_off: str | None = None  # why the last attempt stopped mid-reply
    while True:
        turn = await before_call(ctx, inst.store.db, cfg, messages)  # budgets: before the call
        attempt, prior = await ctx.new_attempt()
        supersede(
            ctx,
            prior,
            broke_off or "the server restarted while this reply was being written",
        )
        shown = Shown(ctx, functools.partial(usage_data, cfg, turn, attempt))
        base = f"m-{ctx.task_id}.s{ctx.step_id}.a{attempt}"
        reply = ReplyStream(shown, base)
        if procs is not None:  # a model process's start is neither the call's time nor the turn's
            began = time.time()
            await procs.ready()
            deadline.at += time.time() - began
        left = deadline.left()
        if left <= 0:
            raise deadline.passed()
        limit = asyncio.timeout(min(cfg.call_timeout_s, left))
        req = Request(
            messages=messages,
            tools=tools,
            max_tokens=cfg.max_tokens,
            max_bytes=limits().max_saved_response_bytes,
            end_required=cfg.stream_end_required,
            label=cfg.model,
        )
        try:
            try:
                async with limit:
                    if model is not None:
                        return await stream_reply(model, req, reply)
                    assert procs is not None
                    return await procs.call(cfg, base, req, shown.emit)
            except TimeoutError:
                if not limit.expired():
                    raise
                if cfg.call_timeout_s >= left:
                    raise deadline.passed() from None
                raise CallTimedOut(
                    f"{cfg.model} did not finish its reply within "
                    f"{seconds(cfg.call_timeout_s)} (call_timeout_s)"
                ) from None
        except ModelFailed:
            reply.close()
            shown.close()
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into retry or failure below
            reply.close()
            shown.close()
            delay, status = retry_delay(exc, retries)
            reason = describe(exc, cfg)
            if delay is None or retries >= cfg.max_retries:
                log.info("task %s: model call failed: %s", ctx.task_id, reason)
                raise ModelFailed(reason) from None
            if delay >= deadline.left():
                raise deadline.passed(reason) from None
            retries += 1
            broke_off = (
                None
                if not shown.started
                else f"the model took longer than {seconds(cfg.call_timeout_s)} (call_timeout_s)"
                if isinstance(exc, CallTimedOut)
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


def supersede(ctx: TaskContext, prior: list[Event], reason: str) -> None:
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


def retry_delay(exc: BaseException, retries: int) -> tuple[float | None, int | None]:
    """How long to wait before trying again (None: do not) and the HTTP status, if any."""
    backoff = random.uniform(0.5, min(30.0, 2.0 ** (retries + 1)))  # full jitter
    if isinstance(exc, ModelHTTPError):
        if exc.status_code not in RETRY_STATUS:
            return None, exc.status_code
        after = retry_after((exc.headers or {}).get("retry-after"))
        return (backoff if after is None else after), exc.status_code
    if isinstance(exc, ModelAPIError | OSError | asyncio.TimeoutError | CallTimedOut | StreamCut):
        return backoff, None  # the network: refused, reset, timed out, cut
    return None, None


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's wait in seconds (a number or an HTTP date), at most 300."""
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


def describe(exc: BaseException, cfg: ModelAgentConfig) -> str:
    """A failed call in the provider's words, for the person and the model's next turn."""
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
    if isinstance(exc, CallTimedOut | StreamCut):
        return str(exc)
    return f"calling {cfg.model} failed: {exc}"
