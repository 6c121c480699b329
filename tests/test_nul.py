"""A NUL character (U+0000) is refused at the door, the same way on both backends.

Postgres keeps no NUL in a text value: on it a title, a note, a user name or an id holding
one was a 500, while SQLite stored it. Now any NUL in a request (its path, its query, any
string or key of its JSON body) is a 400 problem+json before anything is read or written.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.server import Api, Server

NUL = "a\u0000b"


def _problem(r: httpx.Response) -> None:
    assert r.status_code == 400, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert "NUL" in r.json()["detail"], r.text


def test_nul_is_a_400_anywhere_on_both_backends(
    make_server: Any, database_env: dict[str, str]
) -> None:
    server: Server = make_server(**database_env)
    with server.client() as c:
        api = Api(c)
        sid = api.session()
        task = api.start(sid, "one_item", {"item": "x"})["id"]
        api.wait_status(task, "completed")
        head = api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
        sessions = len(c.get("/api/sessions").json()["sessions"])
        bodies: list[tuple[str, str, Any]] = [
            ("POST", "/api/sessions", {"title": NUL}),
            ("PATCH", f"/api/sessions/{sid}", {"title": NUL}),
            ("POST", f"/api/sessions/{sid}/tasks", {"agent": NUL}),
            ("POST", f"/api/sessions/{sid}/tasks", {"agent": "one_item", "input": {"item": NUL}}),
            ("POST", f"/api/sessions/{sid}/tasks", {"agent": "one_item", "input": {NUL: 1}}),
            ("POST", f"/api/sessions/{sid}/messages", {"text": NUL}),
            ("POST", f"/api/tasks/{task}/approvals/ap_x", {"decision": "deny", "note": NUL}),
            ("POST", f"/api/tasks/{task}/regenerate", {"agent": NUL}),
        ]
        for method, path, body in bodies:
            _problem(c.request(method, path, json=body))
        for method, path in [
            ("GET", "/api/sessions/s_%00"),
            ("PATCH", "/api/sessions/s_%00"),
            ("DELETE", "/api/sessions/s_%00"),
            ("GET", "/api/sessions/s_%00/events"),
            ("GET", "/api/tasks/t_%00"),
            ("POST", "/api/tasks/t_%00/cancel"),
            ("GET", "/api/tasks/t_%00/approvals"),
            ("POST", f"/api/tasks/{task}/approvals/ap_%00"),
            ("GET", f"/api/sessions/{sid}/events?task=t_%00"),
            ("GET", "/api/sessions?before=1%00"),
        ]:
            _problem(c.request(method, path, json={"decision": "approve", "title": "x"}))
        # Signing in needs no credentials: a user name with a NUL is refused the same way.
        with server.client(secret=None) as anon:
            _problem(anon.post("/auth", json={"username": NUL, "password": "x"}))
            _problem(anon.post("/auth", json={"secret": NUL}))
        # Nothing was written, and text without a NUL is still taken.
        assert c.get(f"/api/sessions/{sid}").json()["head_seq"] == head
        assert len(c.get("/api/sessions").json()["sessions"]) == sessions
        r = c.post("/api/sessions", json={"title": "a\\u0000b, spelled out"})
        assert r.status_code == 201 and r.json()["title"] == "a\\u0000b, spelled out"
    assert "Traceback" not in server.log()
