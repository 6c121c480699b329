"""Request dependencies. Every API route takes the caller's `Principal` and scopes to it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from tether.auth.authenticator import Authenticator, Principal
from tether.services import Services

# Declared for the OpenAPI document (its security schemes); the authenticator reads the
# headers itself, so that a malformed one gets a 401 that says what to send instead.
_bearer = HTTPBearer(
    auto_error=False, description="An access token from POST /auth or POST /auth/refresh."
)
_secret = APIKeyHeader(
    name="x-web-bootstrap-secret",
    auto_error=False,
    description="The bootstrap secret `tether serve` printed (for scripts).",
)


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def get_auth(request: Request) -> Authenticator:
    auth = get_services(request).auth
    assert auth is not None
    return auth


def client_address(request: Request) -> str:
    # uvicorn rewrites the client from X-Forwarded-For only for TETHER_TRUSTED_PROXIES.
    return request.client.host if request.client else "unknown"


async def current_principal(
    request: Request,
    _token: Annotated[object, Depends(_bearer)] = None,
    _key: Annotated[object, Depends(_secret)] = None,
) -> Principal:
    return await get_auth(request).authenticate(
        request.headers.get("authorization"),
        request.headers.get("x-web-bootstrap-secret"),
        client_address(request),
    )


Caller = Annotated[Principal, Depends(current_principal)]
Svc = Annotated[Services, Depends(get_services)]
Auth = Annotated[Authenticator, Depends(get_auth)]
