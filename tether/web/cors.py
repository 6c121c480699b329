"""CORS for browser frontends on other origins (TETHER_CORS_ORIGINS: an AG-UI page on
http://localhost:3000, say): Starlette's CORSMiddleware for exactly those origins, the methods
and request headers the API takes, and never credentials. The API signs in with bearer tokens;
the refresh cookie must not be usable from another origin, so no Allow-Credentials."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from tether.web.problems import problem

METHODS = ("GET", "POST")
# Last-Event-ID joins a run or stream again. Content-Type (a JSON body) is allowed too:
# Starlette adds it, with the other CORS-safelisted names, to every allowed list.
HEADERS = ("authorization", "last-event-id", "idempotency-key")


class Cors(CORSMiddleware):
    """A refused preflight is a problem+json 400 (as every error is) that carries no
    Access-Control-* header: Starlette's own lists the allowed methods and headers to any
    origin that asks."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=tuple(origins),
            allow_methods=METHODS,
            allow_headers=HEADERS,
            allow_credentials=False,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        # Starlette's body names what failed: "Disallowed CORS origin, method, headers".
        refused = bytes(response.body).decode()
        return problem(
            400,
            "Bad request",
            f"CORS preflight refused ({refused.removeprefix('Disallowed CORS ')} not allowed)",
            headers={"Vary": response.headers["vary"]},
        )
