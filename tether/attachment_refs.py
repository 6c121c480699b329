"""What a message says of the files it attaches: light (pydantic only), so the web schemas,
the turn's input and the SDK read them without the workspace and its database
(tether/attachments.py keeps and reads the files)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Attachment(BaseModel):
    """A file attached to a message, as a turn's input names it (and export shows it)."""

    name: str = Field(description="The file's name, as it was attached.")
    path: str = Field(description="Where it is in the session's workspace (`/files/{path}`).")
    size: int = Field(description="Its size in bytes.")
    media_type: str = Field(description="Its type, read from its bytes and name.")


class AttachmentRef(BaseModel):
    """A message naming a file it attaches: what the upload answered (only `path` counts; the
    rest is read again from the file)."""

    path: str = Field(min_length=1, max_length=1024)
    name: str | None = Field(None, max_length=255)
    size: int | None = None
    media_type: str | None = Field(None, max_length=255)
