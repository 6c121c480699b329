"""Request dependencies. Every API route takes the caller's `Principal` and scopes to it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tether.auth.authenticator import Authenticator, Principal
from tether.auth.shares import is_share_token
from tether.errors import NotFound
from tether.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_auth(request: Request) -> Authenticator:
    auth = get_services(request).auth
    assert auth is not None
    return auth


def client_address(request: Request) -> str:
    # uvicorn rewrites the client from X-Forwarded-For only for TETHER_TRUSTED_PROXIES.
    return request.client.host if request.client else "unknown"


async def current_principal(request: Request) -> Principal:
    # The security schemes are declared in the OpenAPI document (web/app.py), not as
    # dependencies: this reads the headers itself, and says what to send when they are wrong.
    return await get_auth(request).authenticate(
        request.headers.get("authorization"),
        request.headers.get("x-web-bootstrap-secret"),
        client_address(request),
    )


def _share_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and is_share_token(token) else None


async def any_reader(request: Request) -> Principal:
    """A signed-in caller, or a share link's reader (a route that takes this checks that
    what it reads is in `principal.share.session_id`)."""
    token = _share_token(request)
    if token is None:
        return await current_principal(request)
    return await get_auth(request).share_reader(token)


async def session_reader(request: Request, session_id: str) -> Principal:
    """The caller of a route that reads one session: a signed-in user (the route scopes to
    their own sessions), or the reader of a share link made for this very session. Any
    other session, to a share link, is not found, as another user's is."""
    caller = await any_reader(request)
    if caller.share is not None and caller.share.session_id != session_id:
        raise NotFound("session not found")
    return caller


# FastAPI runs a plain `def` dependency on a worker thread: two thread hops per request
# (about a tenth of a stream's open, with the GIL shared with the database threads) for
# reading an attribute. These run on the loop.
async def _services(request: Request) -> Services:
    return get_services(request)


async def _auth(request: Request) -> Authenticator:
    return get_auth(request)


Caller = Annotated[Principal, Depends(current_principal)]
# Read-only routes of one session: a share link's token is accepted there, and only there.
Reader = Annotated[Principal, Depends(session_reader)]
TaskReader = Annotated[Principal, Depends(any_reader)]
Svc = Annotated[Services, Depends(_services)]
Auth = Annotated[Authenticator, Depends(_auth)]
