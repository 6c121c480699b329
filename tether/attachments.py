"""Files attached to a message: kept in the session's workspace, each in a folder of its own
under `attachments/` (two files of one name never replace each other, nor a file an agent
wrote), and typed by what they hold.

The type is read from the file's bytes (an image's or a PDF's signature; text is what decodes
as UTF-8 without NUL) and, for text, its name: never the client's Content-Type, which the
model's request and the page would otherwise believe. What may be attached, and how large,
are settings (`attachment_types`, `max_attachment_bytes`, `max_attachments_per_message`).
"""

from __future__ import annotations

import mimetypes
import secrets
import unicodedata
from collections.abc import Sequence

from tether.attachment_refs import Attachment, AttachmentRef
from tether.errors import InvalidInput, UnsupportedType
from tether.settings import Settings
from tether.workspace import PathRefused, Workspace, normalize

FOLDER = "attachments"

# The built-in table only: the system's /etc/mime.types differs from one machine to the next.
_TYPES = mimetypes.MimeTypes()
for _ext in (".md", ".markdown"):  # not in Python 3.11's own table
    _TYPES.add_type("text/markdown", _ext)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
# Types that are text though not text/*: inlined for the model like text.
TEXT_LIKE = frozenset(
    {"application/json", "application/xml", "application/javascript", "application/x-sh"}
)


def sniff(name: str, data: bytes) -> str:
    """The file's media type, from its bytes (and, for text, its name's extension)."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"\x00" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            guess = _TYPES.guess_type(name, strict=False)[0]
            return guess if guess and is_text(guess) else "text/plain"
    return "application/octet-stream"


def is_text(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type in TEXT_LIKE


def allowed(media_type: str, patterns: Sequence[str]) -> bool:
    """Whether `media_type` is one of `patterns` (`text/*`: any text type)."""
    return any(
        p == media_type or (p.endswith("/*") and media_type.startswith(p[:-1])) for p in patterns
    )


def file_name(name: str) -> str:
    """The name a file is kept under: the client's, if it is one plain name (no folder, no
    `..`); PathRefused otherwise, saying why."""
    clean = name.strip()
    if not clean or clean in (".", "..") or "/" in clean or "\\" in clean:
        raise PathRefused(f"{name!r} is not a plain file name (no folders, no '..')")
    if any(unicodedata.category(ch) == "Cf" for ch in clean):
        # A right-to-left override shows `\u202etxt.exe` as `exe.txt`; a zero-width space
        # makes two names that look alike.
        raise PathRefused(f"{name!r} holds an invisible or direction-changing character")
    return normalize(clean)


async def store(ws: Workspace, name: str, data: bytes, settings: Settings) -> Attachment:
    """Keep `data` as a new attachment of the session; UnsupportedType (415) for a type the
    settings refuse, InvalidInput (422) for a name that is not a plain file name."""
    try:
        clean = file_name(name)
        path = normalize(f"{FOLDER}/{secrets.token_hex(8)}/{clean}")
    except PathRefused as exc:
        raise InvalidInput(f"the file name is refused: {exc}") from None
    kind = sniff(clean, data)
    if not allowed(kind, settings.attachment_types):
        raise UnsupportedType(
            f"{clean} holds {kind}, which cannot be attached here; you can attach "
            f"{', '.join(settings.attachment_types)} (attachment_types)",
            media_type=kind,
        )
    await ws.write(path, data)
    return Attachment(name=clean, path=path, size=len(data), media_type=kind)


async def resolve(
    ws: Workspace, refs: Sequence[AttachmentRef], settings: Settings
) -> list[Attachment]:
    """The attachments a message names, as the workspace has them (their name, size and type
    read again from the files); InvalidInput (422) for too many, for one that is not an
    attachment of this session, or for one named twice."""
    most = settings.max_attachments_per_message
    if len(refs) > most:
        raise InvalidInput(
            f"a message may carry {most} files at most (max_attachments_per_message); "
            f"this one names {len(refs)}"
        )
    out: list[Attachment] = []
    for ref in refs:
        try:
            path = normalize(ref.path)
        except PathRefused:
            path = ""
        data = await ws.read(path) if path.startswith(FOLDER + "/") else None
        if data is None:
            raise InvalidInput(
                f"{ref.path!r} is not a file attached in this session: upload it first "
                "(POST /api/sessions/{id}/attachments)"
            )
        if any(a.path == path for a in out):
            raise InvalidInput(f"{path!r} is named twice")
        name = path.rsplit("/", 1)[-1]
        out.append(Attachment(name=name, path=path, size=len(data), media_type=sniff(name, data)))
    return out
