"""A session's workspace, read-only: the files its agents wrote (tether/workspace.py)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from tether.errors import NotFound
from tether.web.bodies import StrictRoute
from tether.web.deps import Reader, Svc
from tether.web.problems import problems
from tether.workspace import PathRefused, Workspace, normalize

router = APIRouter(prefix="/api", tags=["files"], route_class=StrictRoute)


class FileOut(BaseModel):
    path: str
    size: int


class FileList(BaseModel):
    files: list[FileOut]


@router.get(
    "/sessions/{session_id}/files",
    response_model=FileList,
    responses=problems(401, 404, 429),
)
async def list_files(session_id: str, caller: Reader, svc: Svc) -> FileList:
    """The files in the session's workspace, in path order."""
    await svc.store.session(session_id, caller.user)
    found = await Workspace(svc.store.db, session_id).list()
    return FileList(files=[FileOut(path=p, size=n) for p, n in found])


@router.get(
    "/sessions/{session_id}/files/{path:path}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file."},
        **problems(401, 404, 429),
    },
)
async def get_file(session_id: str, path: str, caller: Reader, svc: Svc) -> Response:
    """One file's content, as a download (never shown as a page of this site)."""
    await svc.store.session(session_id, caller.user)
    try:
        name = normalize(path)
        data = await Workspace(svc.store.db, session_id).read(name)
    except PathRefused:  # a name no file can have
        data = None
    if data is None:
        raise NotFound("there is no such file in this session's workspace")
    name = name.rsplit("/", 1)[-1]
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "x-content-type-options": "nosniff",
            "content-security-policy": "sandbox; default-src 'none'",
        },
    )
