"""A page on another origin calls the AG-UI endpoint from Chromium, which enforces CORS: from
an origin in TETHER_CORS_ORIGINS it runs a turn and joins it again with a bearer token, as an
`@ag-ui/client` HttpAgent does (its fetch: POST, JSON, `Accept: text/event-stream`, the page's
headers, no credentials); from any other origin, or with the refresh cookie
(`credentials: "include"`), the browser refuses."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_server
from tests.helpers.server import SECRET, Server
from tests.test_agui import run_input

FETCH = """async ({url, method, headers, body, credentials}) => {
  try {
    const r = await fetch(url, {method, headers, body, credentials});
    return {status: r.status, type: r.headers.get("content-type"), text: await r.text()};
  } catch (e) {
    return {error: String(e)};
  }
}"""


@contextmanager
def frontend() -> Iterator[str]:
    """A blank page on an origin of its own (http://localhost:PORT), as a frontend's server."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = b"<!doctype html><title>an AG-UI frontend</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def call(
    page: Page,
    url: str,
    method: str = "POST",
    body: Any = None,
    credentials: str = "same-origin",  # the fetch default, and the HttpAgent's
    **headers: str,
) -> dict[str, Any]:
    return dict(
        page.evaluate(
            FETCH,
            {
                "url": url,
                "method": method,
                "headers": {"Accept": "text/event-stream", **headers},
                "body": None if body is None else json.dumps(body),
                "credentials": credentials,
            },
        )
    )


def frames(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines["id"], json.loads(lines["data"])))
    return out


def test_a_page_on_a_configured_origin_runs_and_joins_and_no_other_page_can(
    browser: Browser, make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    with frontend() as mine, frontend() as other:
        server: Server = model_server(
            make_server, fake_llm, tmp_path, TETHER_CORS_ORIGINS=json.dumps([mine])
        )
        # The frontend's own backend signs in and hands the page an access token.
        token = httpx.post(server.url + "/auth", json={"secret": SECRET}).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        api = server.url + "/api/agui"
        thread, run = str(uuid.uuid4()), str(uuid.uuid4())
        body = run_input(thread, run, "words 5")
        ctx = browser.new_context()
        try:
            page = ctx.new_page()
            page.goto(mine)
            r = call(page, api, body=body, **{"Content-Type": "application/json"}, **bearer)
            assert r.get("status") == 200, r
            whole = frames(r["text"])
            assert whole[0][1]["type"] == "RUN_STARTED" and whole[-1][1]["type"] == "RUN_FINISHED"
            # Joined again after a frame id (Last-Event-ID is an allowed header): the rest.
            k = len(whole) // 2
            join = f"{api}/threads/{thread}/runs/{run}"
            r = call(page, join, "GET", **{"Last-Event-ID": whole[k][0]}, **bearer)
            assert r.get("status") == 200, r
            assert frames(r["text"]) == whole[k + 1 :]
            # Its errors are readable there too.
            r = call(page, join, "GET")
            assert r.get("status") == 401 and r["type"] == "application/problem+json", r
            # With credentials (the refresh cookie): no Allow-Credentials, so the browser
            # refuses, the endpoint and the refresh route alike.
            r = call(page, join, "GET", None, "include", **bearer)
            assert "Failed to fetch" in r.get("error", ""), r
            r = call(page, server.url + "/auth/refresh", "POST", None, "include")
            assert "Failed to fetch" in r.get("error", ""), r

            # Another origin: the browser refuses before a byte of the answer is read.
            page.goto(other)
            r = call(page, join, "GET", **bearer)
            assert "Failed to fetch" in r.get("error", ""), r
            r = call(page, api, body=body, **{"Content-Type": "application/json"}, **bearer)
            assert "Failed to fetch" in r.get("error", ""), r
        finally:
            ctx.close()
