"""What a turn sends its model: the turns of the branch it follows, then its own messages,
fitted to the agent's context window.

A turn that was stopped or failed is sent too, as its message and a note of what happened
to it and what it had shown, so the model is never silently missing a turn (and the page
says the same). Storage grows with the conversation, not with its square: each turn keeps
only its own messages (in its result); the branch a turn answered is recorded as a list of
ids (a step), and the messages of those finished turns are read from their rows, which
never change.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    TextPart,
    ToolReturnPart,
    UserPromptPart,
)

from tether.attachment_refs import Attachment
from tether.db.engine import Database
from tether.db.schema import events, tasks
from tether.errors import ModelFailed
from tether.llm import attached

SHOWN_KEEP = 16_000  # characters of a stopped or failed reply told to the next turn
SHORT_RESULT = 2_000  # a tool result shortened to fit the context keeps this much
MARGIN_TOKENS = 64  # the note that earlier turns are left out, and rounding
# An attached image: Anthropic counts about 1,600 tokens for one of 1.15 megapixels, its
# largest before it scales one down (OpenAI counts fewer).
IMAGE_TOKENS = 1_600


def _load(data: list[Any]) -> list[ModelMessage]:
    return ModelMessagesTypeAdapter.validate_python(data)


async def past_messages(
    db: Database, session_id: str, ids: list[str]
) -> list[tuple[str, list[ModelMessage]]]:
    """Each turn's messages, in the order of `ids`: a completed turn's own (its result); a
    stopped, failed or interrupted one as its user message and a note of what happened and
    what it had shown. The turns have ended, so this reads the same on every replay."""
    if not ids:
        return []
    q = sa.select(tasks.c.id, tasks.c.status, tasks.c.input, tasks.c.result, tasks.c.error).where(
        tasks.c.session_id == session_id, tasks.c.id.in_(ids)
    )
    rows = {r[0]: r for r in await db.read(lambda c: c.execute(q).all())}
    out: list[tuple[str, list[ModelMessage]]] = []
    for tid in ids:
        row = rows.get(tid)
        if row is None:
            continue
        _, status, input_text, result_text, error_text = row
        result = json.loads(result_text) if result_text else None
        if status == "completed" and isinstance(result, dict) and result.get("messages"):
            out.append((tid, _load(result["messages"])))
            continue
        inp = json.loads(input_text) or {}
        # Its message as a completed turn's is kept: with a line per file it carried (a
        # message of files alone would otherwise be an empty text, which providers refuse).
        files = [Attachment.model_validate(a) for a in inp.get("attachments") or []]
        text = attached.mentioned(str(inp.get("text", "")), files)
        shown = await shown_text(db, session_id, tid)
        error = json.loads(error_text) if error_text else None
        out.append((tid, unfinished_turn(text, status, shown, error)))
    return out


def unfinished_turn(text: str, status: str, shown: str, error: Any) -> list[ModelMessage]:
    """A turn that did not complete, as the next turn's model is told of it."""
    if status == "cancelled":
        what = "This reply was stopped by the user before it was finished."
    elif status == "failed":
        reason = error.get("message") if isinstance(error, dict) else None
        what = f"This reply failed{f': {reason}' if reason else ''}."
    else:
        what = "This reply was interrupted before it was finished."
    if shown:
        if len(shown) > SHOWN_KEEP:
            shown = shown[:SHOWN_KEEP] + f"… ({len(shown) - SHOWN_KEEP} characters more)"
        note = f"[{what} What had been shown to the user:]\n\n{shown}"
    else:
        note = f"[{what} Nothing had been shown to the user yet.]"
    return [
        ModelRequest(parts=[UserPromptPart(content=text)]),
        ModelResponse(parts=[TextPart(content=note)]),
    ]


async def shown_text(db: Database, session_id: str, task_id: str) -> str:
    """What a turn's replies had shown: its text messages, without those superseded (cut off
    by a crash and written again)."""
    prefix = f"{task_id}:"
    q = (
        sa.select(events.c.type, events.c.data)
        .where(
            events.c.session_id == session_id,
            events.c.key >= prefix,
            events.c.key < prefix + "\U0010ffff",
            events.c.type.in_(("TEXT_MESSAGE_CONTENT", "message.superseded")),
        )
        .order_by(events.c.seq)
    )
    rows = await db.read(lambda c: c.execute(q).all())
    texts: dict[str, list[str]] = {}
    gone: set[str] = set()
    for type_, data in rows:
        d = json.loads(data)
        if not isinstance(d, dict):
            continue
        if type_ == "message.superseded":
            gone.update(d.get("messageIds") or [])
        else:
            texts.setdefault(str(d.get("messageId")), []).append(str(d.get("delta", "")))
    return "\n\n".join("".join(parts) for mid, parts in texts.items() if mid not in gone)


# -- fitting a request into the context window --------------------------------------------------


def tokens(value: Any) -> int:
    """A safe over-estimate of a text's tokens: a third of its UTF-8 bytes (about 4 characters
    make a token in English, 3 in code; a CJK character is 3 bytes and about one token)."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return math.ceil(len(text.encode("utf-8", "replace")) / 3)


def content_tokens(value: Any) -> int:
    """A part's content, an image in it counted as IMAGE_TOKENS (not as its bytes)."""
    if isinstance(value, list):
        return sum(IMAGE_TOKENS if isinstance(v, BinaryContent) else tokens(v) for v in value)
    return tokens(value)


def message_tokens(messages: list[ModelMessage]) -> int:
    n = 0
    for m in messages:
        for p in m.parts:
            n += 4  # a part's own framing
            n += content_tokens(getattr(p, "content", None))
            n += tokens(getattr(p, "args", None)) + tokens(getattr(p, "tool_name", None))
    return n  # instructions (the system prompt) are counted once, by the caller


def _shorten(messages: list[ModelMessage], keep: int) -> tuple[list[ModelMessage], int]:
    """Tool results over `keep` characters cut to it, saying so. Returns (messages, how many)."""
    out: list[ModelMessage] = []
    n = 0
    for m in messages:
        if isinstance(m, ModelRequest):
            parts: list[ModelRequestPart] = []
            for p in m.parts:
                if isinstance(p, ToolReturnPart):
                    text = p.content if isinstance(p.content, str) else json.dumps(p.content)
                    if len(text) > keep:
                        more = len(text) - keep
                        cut = f"{text[:keep]}… ({more} characters cut to fit the context window)"
                        result: ToolReturnPart[Any, Any] = p  # typed subclasses narrow it
                        p = dataclasses.replace(result, content=cut)
                        n += 1
                parts.append(p)
            m = dataclasses.replace(m, parts=parts)
        out.append(m)
    return out, n


@dataclass(frozen=True, slots=True)
class Fitted:
    messages: list[ModelMessage]
    first: str | None  # the first past turn sent (None: none of them)
    dropped: int  # past turns left out, oldest first
    shortened: int  # tool results shortened


class Past:
    """The turns of the branch a turn follows, read newest first and only as far back as the
    context window reaches (a long conversation costs a turn what it sends, not all of it),
    each read once per turn."""

    CHUNK = 8

    def __init__(self, db: Database, session_id: str, ids: list[str]) -> None:
        self.db, self.session_id, self.ids = db, session_id, ids
        self._read: dict[str, list[ModelMessage]] = {}

    async def newest_first(self) -> Any:
        end = len(self.ids)
        while end > 0:
            chunk = self.ids[max(0, end - self.CHUNK) : end]
            todo = [t for t in chunk if t not in self._read]
            for tid, msgs in await past_messages(self.db, self.session_id, todo):
                self._read[tid] = msgs
            for tid in reversed(chunk):
                yield tid, self._read.get(tid, [])
            end -= len(chunk)


async def fit(past: Past, current: list[ModelMessage], budget: int) -> Fitted:
    """The request's messages within `budget` tokens. This turn's own messages come first
    (its older tool results shortened if they must be; a turn that cannot fit fails, saying
    how large it is); then the past turns, newest first, each whole if it fits, else with
    its long tool results shortened, until one does not fit: it and the older ones are left
    out, and the first message sent says so."""
    budget -= MARGIN_TOKENS
    shortened = 0
    own = message_tokens(current)
    if own > budget and len(current) > 1:
        head, n = _shorten(current[:-1], SHORT_RESULT)  # never the newest round's results
        current, shortened = [*head, current[-1]], n
        own = message_tokens(current)
    if own > budget:
        raise ModelFailed(
            f"this turn needs about {own + MARGIN_TOKENS:,} tokens, more than the agent's "
            f"context window allows ({budget + MARGIN_TOKENS:,} after the system prompt, tools "
            "and reply); start a new session or give the agent a larger context_tokens"
        )
    room = budget - own
    kept: list[tuple[str, list[ModelMessage]]] = []
    async for tid, msgs in past.newest_first():
        cost = message_tokens(msgs)
        if cost > room:
            short, n = _shorten(msgs, SHORT_RESULT)
            cost = message_tokens(short)
            if not n or cost > room:
                break
            msgs, shortened = short, shortened + n
        kept.append((tid, msgs))
        room -= cost
    kept.reverse()
    dropped = len(past.ids) - len(kept)
    messages: list[ModelMessage] = [m for _, msgs in kept for m in msgs] + list(current)
    if dropped:
        note = UserPromptPart(
            content=f"(The {dropped} earliest turn{'s' if dropped != 1 else ''} of this "
            "conversation are left out: they did not fit the context window.)"
        )
        first = messages[0]
        if isinstance(first, ModelRequest):
            messages[0] = dataclasses.replace(first, parts=[note, *first.parts])
    return Fitted(messages, kept[0][0] if kept else None, dropped, shortened)
