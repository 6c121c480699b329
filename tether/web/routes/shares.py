"""Read-only share links to a session: made, listed and revoked by its owner; opened by
anyone holding the link (tether/auth/shares.py says what the token may read)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from tether.auth.shares import ENDED, Share
from tether.errors import NotFound
from tether.web.bodies import StrictRoute
from tether.web.deps import Auth, Caller, TaskReader
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.schemas import SharedSession, ShareList, ShareMade

router = APIRouter(prefix="/api", tags=["shares"], route_class=StrictRoute)

TEN_YEARS_S = 10 * 365 * 86400


class ShareIn(BaseModel):
    expires_in_s: int | None = Field(
        None, ge=1, le=TEN_YEARS_S, description="The link stops working after this long."
    )
    label: str = Field("", max_length=200, description="Whom or what the link is for.")


def _out(share: Share, now: float) -> dict[str, Any]:
    return {
        "id": share.id,
        "label": share.label,
        "created_at": share.created_at,
        "expires_at": share.expires_at,
        "expired": share.expires_at is not None and now >= share.expires_at,
    }


@router.post(
    "/sessions/{session_id}/shares",
    status_code=201,
    response_model=None,
    responses={201: {"model": ShareMade}, **problems(400, 401, 404, 413, 422, 429)},
)
async def create_share(
    session_id: str, caller: Caller, auth: Auth, request: Request, body: ShareIn | None = None
) -> Response:
    """A read-only link to your session: whoever opens it sees its conversation, events and
    tasks, live, and nothing else. The token is in this answer only."""
    spec = body or ShareIn()
    share, token = await auth.shares.create(
        session_id, caller.user, label=spec.label.strip(), expires_in_s=spec.expires_in_s
    )
    url = f"{str(request.base_url).rstrip('/')}/#share={token}"
    return json_response({**_out(share, time.time()), "token": token, "url": url}, 201)


@router.get(
    "/sessions/{session_id}/shares",
    response_model=None,
    responses={200: {"model": ShareList}, **problems(401, 404, 429)},
)
async def list_shares(session_id: str, caller: Caller, auth: Auth) -> Response:
    """Your session's links that were not revoked, expired ones too (marked so)."""
    now = time.time()
    found = await auth.shares.list(session_id, caller.user)
    return json_response({"shares": [_out(s, now) for s in found]})


@router.delete(
    "/shares/{share_id}",
    status_code=204,
    response_model=None,
    responses=problems(401, 404, 429),
)
async def revoke_share(share_id: str, caller: Caller, auth: Auth) -> Response:
    """Revoke a link: it reads nothing from now on, and its open streams end at once (with
    an `auth` event), in every process."""
    share = await auth.shares.revoke(share_id, caller.user)
    auth.end(share.principal_id, f"this share link was revoked: {ENDED}")
    return Response(status_code=204)


@router.get(
    "/share",
    response_model=None,
    responses={200: {"model": SharedSession}, **problems(401, 404, 429)},
)
async def opened_share(caller: TaskReader) -> Response:
    """What a share link opens (send its token as `Authorization: Bearer tsh_…`): the page
    a link leads to asks this first."""
    share = caller.share
    if share is None:
        raise NotFound("this answers a share link's token only (Authorization: Bearer tsh_…)")
    return json_response(
        {"session_id": share.session_id, "label": share.label, "expires_at": share.expires_at}
    )
