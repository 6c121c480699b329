"""Request dependencies. Every API route takes the caller's `Principal` and scopes to it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tether.auth.authenticator import Authenticator, Principal
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


# FastAPI runs a plain `def` dependency on a worker thread: two thread hops per request
# (about a tenth of a stream's open, with the GIL shared with the database threads) for
# reading an attribute. These run on the loop.
async def _services(request: Request) -> Services:
    return get_services(request)


async def _auth(request: Request) -> Authenticator:
    return get_auth(request)


Caller = Annotated[Principal, Depends(current_principal)]
Svc = Annotated[Services, Depends(_services)]
Auth = Annotated[Authenticator, Depends(_auth)]
