"""CORS for a frontend on another origin (an AG-UI page, `docs/agui.md`): exactly the
configured origins, never with credentials, and no CORS headers at all by default; against
a real server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_server
from tests.helpers.server import SECRET, Server
from tests.test_agui import PROBLEM, read_until_end, run_input
from tether.settings import Settings

FRONTEND = "http://localhost:3000"  # an AG-UI page served from another origin


def preflight(
    c: httpx.Client,
    origin: str,
    path: str = "/api/agui",
    method: str = "POST",
    headers: str = "authorization, content-type, last-event-id",
) -> httpx.Response:
    """The OPTIONS request a browser sends before a cross-origin request with these."""
    return c.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def cors(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def bearer(server: Server) -> str:
    """An access token, signed in for without an Origin (as a frontend's own backend does)."""
    r = httpx.post(server.url + "/auth", json={"secret": SECRET})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_a_frontend_on_a_configured_origin_may_call_the_endpoint_and_no_other(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    origins = json.dumps([FRONTEND, "https://app.example.com"])
    server = model_server(make_server, fake_llm, tmp_path, TETHER_CORS_ORIGINS=origins)
    auth = {"Authorization": f"Bearer {bearer(server)}"}
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path, method in (
            ("/api/agui", "POST"),
            (f"/api/agui/threads/{thread}/runs/{run}", "GET"),
        ):
            r = preflight(c, FRONTEND, path, method, "authorization, content-type, last-event-id")
            assert r.status_code == 200, r.text
            h = cors(r)
            assert h["access-control-allow-origin"] == FRONTEND
            assert {m.strip() for m in h["access-control-allow-methods"].split(",")} == {
                "GET",
                "POST",
            }
            allowed = {x.strip().lower() for x in h["access-control-allow-headers"].split(",")}
            assert allowed >= {"authorization", "content-type", "last-event-id", "idempotency-key"}
            assert "x-web-bootstrap-secret" not in allowed
            assert "access-control-allow-credentials" not in h
        # Any other origin, look-alikes included, gets no Access-Control-* header at all.
        for other in (
            "http://localhost:3001",
            "https://localhost:3000",
            "http://localhost:3000.evil.example",
            "http://evil.example",
            "null",
        ):
            r = preflight(c, other)
            assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, other
            assert cors(r) == {}, other
        # The configured origin, asking for a method or header the API does not take.
        for method, headers in (("DELETE", "authorization"), ("POST", "x-web-bootstrap-secret")):
            r = preflight(c, FRONTEND, method=method, headers=headers)
            assert r.status_code == 400 and cors(r) == {}, (method, headers)

        # The run itself, from the page: its stream and its errors are readable there.
        body = run_input(thread, run, "words 3")
        origin = {"Origin": FRONTEND}
        with c.stream("POST", "/api/agui", json=body, headers={**origin, **auth}) as r:
            assert r.status_code == 200
            assert cors(r) == {"access-control-allow-origin": FRONTEND}
            frames, ended = read_until_end(r)
        assert ended
        r = c.post("/api/agui", json=body, headers=origin)
        assert r.status_code == 401 and cors(r) == {"access-control-allow-origin": FRONTEND}
        r = c.post("/api/agui", json=body, headers={"Origin": "http://evil.example", **auth})
        assert cors(r) == {}


def test_the_refresh_cookie_is_never_usable_from_another_origin(make_server: Any) -> None:
    """What a page elsewhere sends with `credentials: "include"`: the preflight is allowed
    (the origin is configured) but never says Allow-Credentials, so the browser withholds
    the answer; and the cookie route refuses the request anyway."""
    server = make_server(TETHER_CORS_ORIGINS=json.dumps([FRONTEND]))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        signed_in = c.post("/auth", json={"secret": SECRET})
        cookie = {"Cookie": f"tether_refresh={signed_in.cookies['tether_refresh']}"}
        for path in ("/auth/refresh", "/auth", "/api/agui"):
            r = preflight(c, FRONTEND, path, headers="content-type")
            assert r.status_code == 200 and "access-control-allow-credentials" not in cors(r)
        r = c.post("/auth/refresh", headers={"Origin": FRONTEND, **cookie})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert "access-control-allow-credentials" not in cors(r)
        # The same cookie from the server's own origin is a good one.
        r = c.post("/auth/refresh", headers=cookie)
        assert r.status_code == 200, r.text


def test_without_cors_origins_there_are_no_cors_headers(make_server: Any) -> None:
    server = make_server()
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    with server.client(timeout=30) as c:
        r = preflight(c, FRONTEND)
        assert cors(r) == {} and r.status_code == 405
        with c.stream(
            "POST", "/api/agui", json=run_input(thread, run, "hello"), headers={"Origin": FRONTEND}
        ) as r:
            assert r.status_code == 200 and cors(r) == {}
        r = c.get("/healthz", headers={"Origin": FRONTEND})
        assert r.status_code == 200 and cors(r) == {}


def test_cors_origins_are_exact_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON list in TETHER_CORS_ORIGINS; an entry a browser would never send as its Origin
    (a trailing slash, a path, upper case, a default port) or `*` is refused at start, not
    silently unmatched."""
    monkeypatch.setenv("TETHER_CORS_ORIGINS", json.dumps([FRONTEND, "https://[::1]:8443"]))
    assert Settings().cors_origins == [FRONTEND, "https://[::1]:8443"]
    assert Settings(cors_origins=[]).cors_origins == []
    for bad in (
        "*",
        f"{FRONTEND}/",
        f"{FRONTEND}/app",
        "http://LOCALHOST:3000",
        "localhost:3000",
        "https://app.example.com:443",
    ):
        with pytest.raises(ValidationError, match="not an exact origin"):
            Settings(cors_origins=[bad])
