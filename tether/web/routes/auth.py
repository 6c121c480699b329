"""Sign-in, refresh, sign-out and who-am-I."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from tether.auth.authenticator import SignIn
from tether.errors import Forbidden, Unauthorized
from tether.web.bodies import StrictRoute
from tether.web.deps import Auth, Caller, client_address
from tether.web.problems import problems
from tether.web.schemas import Me, SignedIn

router = APIRouter(tags=["auth"], route_class=StrictRoute)

COOKIE = "tether_refresh"
COOKIE_PATH = "/auth"


class SignInBody(BaseModel):
    secret: str | None = Field(None, max_length=512, description="The bootstrap secret.")
    username: str | None = Field(None, max_length=128)
    password: str | None = Field(None, max_length=1024)


def require_same_origin(request: Request) -> None:
    """Cookie-authenticated routes refuse cross-site requests (CSRF)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
        raise Forbidden(f"cross-origin request refused (Origin: {origin})")


def _signed_in(request: Request, response: Response, s: SignIn) -> dict[str, Any]:
    response.set_cookie(
        COOKIE,
        s.rotation.refresh_token,
        max_age=max(0, int(s.rotation.expires_at - time.time())),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    return {
        "access_token": s.access_token,
        "token_type": "Bearer",
        "expires_at": s.access_expires_at,
        "expires_in": s.access_expires_at - time.time(),
        "user": {"id": s.user.id, "name": s.user.name},
    }


@router.post("/auth", response_model=SignedIn, responses=problems(400, 401, 403, 413, 422, 429))
async def sign_in(
    request: Request, response: Response, auth: Auth, body: SignInBody | None = None
) -> dict[str, Any]:
    """Sign in with the bootstrap secret (body or `x-web-bootstrap-secret`), or a user name
    and password. Returns an access token; sets the refresh cookie."""
    require_same_origin(request)
    body = body or SignInBody()
    s = await auth.sign_in(
        secret=body.secret
        if body.secret is not None
        else request.headers.get("x-web-bootstrap-secret"),
        username=body.username,
        password=body.password,
        address=client_address(request),
    )
    return _signed_in(request, response, s)


@router.post("/auth/refresh", response_model=SignedIn, responses=problems(401, 403))
async def refresh(request: Request, response: Response, auth: Auth) -> dict[str, Any]:
    """Trade the refresh cookie for a new access token and a new refresh cookie."""
    require_same_origin(request)
    return _signed_in(request, response, await auth.refresh(request.cookies.get(COOKIE)))


@router.post("/auth/logout", status_code=204, responses=problems(403))
async def logout(request: Request, auth: Auth) -> Response:
    """End this sign-in: its refresh tokens stop working and its open streams close."""
    require_same_origin(request)
    token = request.cookies.get(COOKIE)
    if token:
        sid = await auth.store.revoke_by_token(token, "signed out")
        if sid is not None:
            auth.ended(sid, "signed out")
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        try:
            claims = auth.tokens.verify(authorization[7:].strip())
        except Unauthorized:  # signing out with a stale token still clears the cookie
            claims = None
        if claims is not None:
            await auth.store.revoke(claims.auth_session_id, "signed out")
            auth.ended(claims.auth_session_id, "signed out")
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


@router.get("/api/me", response_model=Me, responses=problems(401, 429))
async def me(caller: Caller, auth: Auth) -> dict[str, Any]:
    user = await auth.store.user(caller.user)
    return {
        "user": {"id": user.id, "name": user.name},
        "auth_session_id": caller.auth_session_id,
        "access_expires_at": caller.access_expires_at,
        "server_time": time.time(),
    }
