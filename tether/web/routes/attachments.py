"""Attaching a file to a message: the file goes into the session's workspace first (this
route), then the message names it (`attachments` of POST /messages).

The body is the file itself, raw (the page sends a `File` as it is; `curl --data-binary`
does too), its name in the query: no multipart parser between the bytes and the limit. The
body is read up to `max_attachment_bytes` (the body limit middleware stops it there for this
route, with 413) and stored whole or not at all, so a refused file leaves nothing behind.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from tether import attachments
from tether.attachment_refs import Attachment
from tether.errors import PayloadTooLarge, StorageQuotaExceeded
from tether.quotas import storage_bytes
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Svc
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.workspace import Workspace

router = APIRouter(prefix="/api", tags=["files"], route_class=StrictRoute)


class AttachmentLimits(BaseModel):
    max_bytes: int = Field(description="Largest file (max_attachment_bytes).")
    max_files: int = Field(description="Files a message may carry (max_attachments_per_message).")
    types: list[str] = Field(description="Media types accepted (attachment_types; `text/*`: any).")


@router.get("/attachments/limits", response_model=AttachmentLimits, responses=problems(401, 429))
async def attachment_limits(caller: Caller, svc: Svc) -> AttachmentLimits:
    """What may be attached: the composer refuses a file before it is uploaded."""
    s = svc.settings
    return AttachmentLimits(
        max_bytes=s.max_attachment_bytes,
        max_files=s.max_attachments_per_message,
        types=s.attachment_types,
    )


@router.post(
    "/sessions/{session_id}/attachments",
    status_code=201,
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "The file's bytes (any Content-Type: the type is read from them).",
        }
    },
    responses={
        201: {"model": Attachment, "description": "The file, kept."},
        **problems(401, 404, 413, 415, 422, 429, 507),
    },
)
async def attach(
    session_id: str,
    request: Request,
    caller: Caller,
    svc: Svc,
    name: Annotated[str, Query(min_length=1, max_length=255, description="The file's name.")],
) -> Response:
    """Keep a file in the session's workspace (`attachments/<folder>/<name>`, a new folder
    each time) for a message to attach. Its type is read from its bytes: one the server does
    not accept (`attachment_types`) is a 415; a body past `max_attachment_bytes` a 413."""
    await svc.store.session(session_id, caller.user)
    limit = svc.settings.max_attachment_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # (the middleware stops it first; this holds without it)
            raise PayloadTooLarge(f"a file may be at most {limit:,} bytes (max_attachment_bytes)")
    # Checked and written under the user's lock (as an import is): uploads at once would
    # each see room for itself, and all be kept.
    async with svc.db.lock(f"sessions:{caller.user}"):
        await _check_room(svc, caller.user, len(body))
        found = await attachments.store(
            Workspace(svc.store.db, session_id), name, bytes(body), svc.settings
        )
    return json_response(found.model_dump(), 201)


async def _check_room(svc: Svc, user: str, size: int) -> None:
    """507 when the file would take the user's storage past their quota."""
    quota = svc.settings.max_storage_bytes_per_user
    if not quota:
        return
    used: int = await svc.store.db.read(lambda c: storage_bytes(c, user))
    if used + size > quota:
        raise StorageQuotaExceeded(
            f"this file ({size:,} bytes) does not fit in your storage quota: your sessions "
            f"store {used:,} of {quota:,} bytes (max_storage_bytes_per_user); delete "
            "sessions you no longer need",
            limit="max_storage_bytes_per_user",
            used=used,
            quota=quota,
        )
