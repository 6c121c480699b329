"""What a turn's model is given of the files attached to its message.

On the turn that carries them: a text file inline (up to `attachment_inline_chars`; past
that its head, and where the whole file is), an image as an image part for a model that
takes images (`images` in the agents file), any other file named by its path for the agent
to read. Later turns of the branch see one line per file: the turn's stored messages (which
they are sent) hold that mention, not the files, so a conversation's requests do not grow
with every file ever attached.

Read from the workspace when the turn builds its first request (and again if it is replayed
after a crash: the files are the same unless an agent rewrote them).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic_ai.messages import BinaryContent, UserContent

from tether.attachment_refs import Attachment
from tether.attachments import is_text, sniff
from tether.llm.config import ModelAgentConfig
from tether.workspace import Workspace

# Providers refuse larger images (Anthropic: 5 MB each); past it an image is named, not sent.
MAX_IMAGE_BYTES = 5 << 20


def _where(cfg: ModelAgentConfig, a: Attachment) -> str:
    how = " (read_file opens it)" if "read_file" in cfg.tools else ""
    return f"in the workspace at {a.path}{how}"


async def prompt(
    ws: Workspace,
    text: str,
    files: Sequence[Attachment],
    cfg: ModelAgentConfig,
    inline_chars: int,
) -> str | list[UserContent]:
    """The user's message as this turn's model is sent it, its attachments included."""
    if not files:
        return text
    # A message of files alone has no text part: providers refuse an empty one.
    out: list[UserContent] = [text] if text.strip() else []
    for named in files:
        data = await ws.read(named.path)
        # Typed again from the bytes read now: an agent may have rewritten the file since.
        a = (
            named
            if data is None
            else named.model_copy(update={"media_type": sniff(named.name, data), "size": len(data)})
        )
        head = f"[Attached: {a.name} ({a.media_type}, {a.size:,} bytes)"
        if data is None:
            out.append(f"{head}: no longer in the workspace (it was at {a.path}).]")
        elif (
            a.media_type.startswith("image/") and cfg.takes_images and len(data) <= MAX_IMAGE_BYTES
        ):
            out += [
                f"{head}, {_where(cfg, a)}:]",
                BinaryContent(data=data, media_type=a.media_type),
            ]
        elif is_text(a.media_type) and inline_chars:
            body = data.decode("utf-8", "replace")
            if len(body) > inline_chars:
                more = len(body) - inline_chars
                body = f"{body[:inline_chars]}\n… ({more:,} characters more: the whole file is {_where(cfg, a)})"
            out.append(f"{head}, {_where(cfg, a)}:]\n{body}\n[End of {a.name}.]")
        else:
            why = "the model does not see images" if a.media_type.startswith("image/") else ""
            out.append(
                f"{head}: not shown here{f' ({why})' if why else ''}; it is {_where(cfg, a)}.]"
            )
    return out


def mentioned(text: str, files: Sequence[Attachment]) -> str:
    """The message as later turns are sent it: its text, and one line per file it carried."""
    if not files:
        return text
    lines = "\n".join(f"- {a.name} ({a.media_type}, {a.size:,} bytes) at {a.path}" for a in files)
    said = f"[Attached to this message, in the workspace:\n{lines}]"
    return f"{text}\n\n{said}" if text.strip() else said
