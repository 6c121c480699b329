"""A session exported (Markdown to read, JSON to keep), and a JSON export imported."""

from __future__ import annotations

import re
import time
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from starlette.responses import Response

from tether import quotas
from tether.exports import document, markdown
from tether.exports.importer import Document, import_document
from tether.web import render
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Svc
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.schemas import SessionOut

router = APIRouter(prefix="/api/sessions", tags=["export"], route_class=StrictRoute)

_MEDIA = {"markdown": ("text/markdown; charset=utf-8", "md"), "json": ("application/json", "json")}


def file_name(title: str, at: float, ext: str) -> str:
    """`tether-<title as a slug>-<date>.<ext>`: a name every file system takes."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:60] or "session"
    return f"tether-{slug}-{time.strftime('%Y-%m-%d', time.gmtime(at))}.{ext}"


@router.get(
    "/{session_id}/export",
    response_class=Response,
    responses={
        200: {
            "content": {"text/markdown": {}, "application/json": {}},
            "description": "The session as a download.",
        },
        **problems(400, 401, 404, 429),
    },
)
async def export_session(
    session_id: str,
    caller: Caller,
    svc: Svc,
    format: Annotated[
        Literal["markdown", "json"],
        Query(
            description="`markdown`: the conversation as it reads (the branch shown, sub-agents "
            "nested, tool calls one line each), or the task tree; `json`: the log, which "
            "POST /api/sessions/import takes back."
        ),
    ] = "markdown",
) -> Response:
    """Your session as a file to download."""
    doc = await svc.db.read(lambda c: document.read(c, session_id, caller.user))
    media, ext = _MEDIA[format]
    body = markdown.render(doc) if format == "markdown" else json_response(doc).body
    name = file_name(doc["session"]["title"], doc["exported_at"], ext)
    disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


@router.post(
    "/import",
    status_code=201,
    response_model=None,
    responses={201: {"model": SessionOut}, **problems(400, 401, 413, 422, 429, 507)},
)
async def import_session(body: Document, caller: Caller, svc: Svc) -> Response:
    """A JSON export brought back as a new session of yours, with the same log (new ids,
    mapped consistently). Checked whole and written in one transaction: a refused document
    leaves nothing behind. Larger than `max_import_bytes`: 413."""
    limit = svc.settings.max_storage_bytes_per_user
    async with svc.db.lock(f"sessions:{caller.user}"):
        await quotas.check_sessions(svc.db, svc.settings, caller.user)
        room = None
        if limit:
            used = await svc.db.read(lambda c: quotas.storage_bytes(c, caller.user))
            room = limit - used
        sid = await import_document(
            svc.db,
            body,
            caller.user,
            max_event_bytes=svc.settings.max_event_bytes,
            room=room,
            index=svc.store.search,
        )
    s = await svc.store.session(sid, caller.user)
    return json_response(render.session(s), 201)
