"""Auth never expires under running work; nobody touches what is not theirs."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.helpers.server import SECRET, Api, Server, add_user, sse_frames, wait_until


class Browser:
    """A signed-in client as a browser tab is: bearer token in memory, refresh cookie in a jar."""

    def __init__(self, server: Server, **sign_in: str) -> None:
        self.c = httpx.Client(base_url=server.url, timeout=10)
        r = self.c.post("/auth", json=sign_in or {"secret": SECRET})
        assert r.status_code == 200, r.text
        self._take(r)
        self.refreshes = 0

    def _take(self, r: httpx.Response) -> None:
        body = r.json()
        self.token = body["access_token"]
        self.expires_at = body["expires_at"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> httpx.Response:
        r = self.c.post("/auth/refresh")
        if r.status_code == 200:
            self._take(r)
            self.refreshes += 1
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.c.get(path, headers=self.headers, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.c.post(path, headers=self.headers, **kw)


def unauthorized(r: httpx.Response) -> str:
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    detail = str(r.json()["detail"])
    assert "POST /auth" in detail  # every 401 says what to do next
    return detail


def test_token_ttl_shorter_than_the_task_never_shows_a_401(make_server: Any) -> None:
    # Tokens live 1-2 s (the expiry is rounded up to a whole second), the task 20 s.
    server = make_server(TETHER_ACCESS_TTL_S="1")
    tab = Browser(server)
    sid = tab.post("/api/sessions", json={"title": "long"}).json()["id"]
    root = tab.post(
        f"/api/sessions/{sid}/tasks",
        json={"agent": "batch", "input": {"items": list(range(20)), "delay_s": 1}},
    ).json()["id"]

    statuses: list[int] = []
    problems: list[Any] = []
    stop = threading.Event()

    def refresher_and_poller() -> None:
        # Refresh at ~75% of the token's life; poll status with whatever token is current.
        while not stop.is_set():
            if tab.expires_at - time.time() < 0.5:
                r = tab.refresh()
                statuses.append(r.status_code)
                if r.status_code != 200:
                    problems.append(("refresh", r.text))
            r = tab.get(f"/api/tasks/{root}")
            statuses.append(r.status_code)
            if r.status_code != 200:
                problems.append(("get", r.text, tab.expires_at - time.time()))
            stop.wait(0.25)

    worker = threading.Thread(target=refresher_and_poller)
    worker.start()
    seen: list[dict[str, Any]] = []
    named: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            with c.stream("GET", f"/api/sessions/{sid}/stream", headers=tab.headers) as r:
                assert r.status_code == 200
                for f in sse_frames(r):
                    named.append(f.event)
                    if f.event == "message":
                        seen.append(f.data)
                        if (
                            f.data["task_id"] == root
                            and f.data["type"] == "task.status"
                            and f.data["data"]["status"] == "completed"
                        ):
                            break
    finally:
        stop.set()
        worker.join()
    assert "auth" not in named
    assert set(statuses) == {200}, problems
    assert tab.refreshes >= 10  # the task outlived ten token lifetimes and more
    log = Api(server.client()).all_events(sid)
    assert seen == log


def test_a_running_task_keeps_the_sign_in_from_idling_out(make_server: Any) -> None:
    server = make_server(TETHER_IDLE_TIMEOUT_S="1")
    tab = Browser(server)
    owner = Api(server.client())  # watches through the secret header, which touches no sign-in
    sid = owner.session()
    root = owner.start(sid, "batch", {"items": [1, 2, 3], "delay_s": 1})["id"]
    time.sleep(2)  # the tab does nothing for twice the idle timeout, while the task runs
    assert owner.task(root)["status"] == "running"
    assert tab.refresh().status_code == 200
    assert tab.get("/api/me").status_code == 200
    owner.wait_status(root, "completed")
    time.sleep(1.5)  # now idle, with nothing running
    unauthorized(tab.refresh())
    assert "idle" in unauthorized(tab.get("/api/me"))


def test_one_long_task_keeps_its_sign_in_through_several_idle_timeouts(
    make_server: Any,
) -> None:
    """The user's first task, one step with no sub-task ending (so "a task ended recently"
    cannot stand in for "a task is running"), outlives three idle timeouts of 1 s."""
    server = make_server(TETHER_IDLE_TIMEOUT_S="1")
    tab = Browser(server)
    owner = Api(server.client())  # watches through the secret header, which touches no sign-in
    sid = owner.session()
    root = owner.start(sid, "hold", {"hold_s": 120})["id"]
    wait_until(lambda: owner.task(root)["status"] == "running", what="the task to run")

    def quiet() -> None:
        # The tab does nothing for over twice the idle timeout (time itself is under test).
        since = time.monotonic()
        wait_until(lambda: time.monotonic() - since > 2.2, timeout=10, interval=0.2)

    for _ in range(3):
        quiet()
        assert owner.task(root)["status"] == "running"
        assert tab.get("/api/me").status_code == 200
        assert tab.refresh().status_code == 200
    owner.c.post(f"/api/tasks/{root}/cancel").raise_for_status()
    owner.wait_status(root, "cancelled")
    quiet()
    assert "idle" in unauthorized(tab.get("/api/me"))


def test_refresh_token_reuse_revokes_the_family_and_closes_its_streams(make_server: Any) -> None:
    server = make_server(TETHER_REFRESH_GRACE_S="0")
    tab = Browser(server)
    stolen = tab.c.cookies.get("tether_refresh")
    assert tab.refresh().status_code == 200
    sid = tab.post("/api/sessions", json={}).json()["id"]
    frames: list[Any] = []
    opened = threading.Event()

    def follow() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            with c.stream("GET", f"/api/sessions/{sid}/stream", headers=tab.headers) as r:
                for f in sse_frames(r):
                    opened.set()
                    frames.append(f)

    t = threading.Thread(target=follow)
    t.start()
    assert opened.wait(10)
    with httpx.Client(base_url=server.url, timeout=10) as thief:
        thief.cookies.set("tether_refresh", stolen, path="/auth")
        assert "already used" in unauthorized(thief.post("/auth/refresh"))
    unauthorized(tab.refresh())  # the legitimate, newer token is dead too
    unauthorized(tab.get("/api/me"))
    t.join(10)
    assert not t.is_alive(), "the stream did not close"
    assert frames[-1].event == "auth" and "reuse" in frames[-1].data["reason"]


def test_two_tabs_refreshing_with_one_token_both_succeed(make_server: Any) -> None:
    server = make_server()
    tab = Browser(server)
    token = tab.c.cookies.get("tether_refresh")
    results: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def race() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            c.cookies.set("tether_refresh", token, path="/auth")
            barrier.wait()
            results.append(c.post("/auth/refresh"))

    threads = [threading.Thread(target=race) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200]
    assert results[0].json()["access_token"] != results[1].json()["access_token"]
    for r in results:
        me = httpx.get(
            server.url + "/api/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        assert me.status_code == 200


def test_authorization_matrix(make_server: Any) -> None:
    server = make_server()
    add_user(server, "bob", "correct horse battery")
    owner = Browser(server)
    bob = Browser(server, username="bob", password="correct horse battery")
    assert bob.get("/api/me").json()["user"]["name"] == "bob"

    sid = owner.post("/api/sessions", json={"title": "mine"}).json()["id"]
    root = owner.post(
        f"/api/sessions/{sid}/tasks", json={"agent": "one_item", "input": {"item": 1}}
    ).json()["id"]
    routes = [
        ("GET", f"/api/sessions/{sid}", None),
        ("GET", f"/api/sessions/{sid}/tasks", None),
        ("GET", f"/api/sessions/{sid}/events", None),
        ("GET", f"/api/sessions/{sid}/stream", None),
        ("POST", f"/api/sessions/{sid}/tasks", {"agent": "one_item", "input": {}}),
        ("GET", f"/api/tasks/{root}", None),
        ("POST", f"/api/tasks/{root}/cancel", None),
    ]
    for method, path, body in routes:
        r = bob.c.request(method, path, headers=bob.headers, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    for path in (f"/api/sessions/{sid}", f"/api/sessions/{sid}/tasks", f"/api/tasks/{root}"):
        assert owner.get(path).status_code == 200  # the same ids work for their owner
    assert bob.get("/api/sessions").json()["sessions"] == []
    assert Api(server.client()).task(root)["status"] in ("running", "completed", "queued")

    key = (server.data_dir / "jwt.key").read_text().strip()
    now = time.time()
    expired = jwt.encode({"sub": "owner", "sid": "a_x", "exp": now - 5}, key, algorithm="HS256")
    forged = jwt.encode(
        {"sub": "owner", "sid": "a_x", "exp": now + 60}, "not-the-key-" * 4, algorithm="HS256"
    )
    header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        .rstrip(b"=")
        .decode()
    )
    claims = (
        base64.urlsafe_b64encode(
            json.dumps({"sub": "owner", "sid": "a_x", "exp": now + 60}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    alg_none = f"{header}.{claims}."
    bad_auth = [
        {},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {alg_none}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {base64.b64encode(b'owner:x').decode()}"},
    ]
    with httpx.Client(base_url=server.url, timeout=10) as anon:
        for method, path, body in routes + [
            ("GET", "/api/sessions", None),
            ("POST", "/api/sessions", {}),
            ("GET", "/api/me", None),
        ]:
            for headers in bad_auth:
                unauthorized(anon.request(method, path, headers=headers, json=body))
        assert "expired" in unauthorized(
            anon.get("/api/me", headers={"Authorization": f"Bearer {expired}"})
        )


def test_brute_force_is_rate_limited_and_secrets_are_owner_only(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(TETHER_AUTH_MAX_FAILURES="5", TETHER_BOOTSTRAP_SECRET="")
    secret = (server.data_dir / "bootstrap_secret").read_text().strip()
    assert len(secret) >= 32
    for name in ("bootstrap_secret", "jwt.key"):
        assert stat.S_IMODE((server.data_dir / name).stat().st_mode) == 0o600
    assert f"#secret={secret}" in server.log()

    with httpx.Client(base_url=server.url, timeout=10) as c:
        for i in range(5):
            unauthorized(c.post("/auth", json={"secret": f"guess-{i}"}))
        r = c.post("/auth", json={"secret": secret})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == "application/problem+json"
        assert c.get("/api/sessions", headers={"x-web-bootstrap-secret": secret}).status_code == 429
        assert c.post("/auth", json={"username": "x", "password": "y" * 8}).status_code == 429


def test_wrong_secret_header_counts_as_a_failure(make_server: Any) -> None:
    server = make_server(TETHER_AUTH_MAX_FAILURES="3")
    with server.client(secret="wrong") as c:
        for _ in range(3):
            unauthorized(c.get("/api/sessions"))
        assert c.get("/api/sessions").status_code == 429


def test_logout_ends_the_sign_in_and_its_streams(make_server: Any) -> None:
    server = make_server()
    tab = Browser(server)
    sid = tab.post("/api/sessions", json={}).json()["id"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream", headers=tab.headers) as r:
            frames = sse_frames(r)
            assert next(frames).event == "snapshot"
            assert tab.post("/auth/logout").status_code == 204
            rest = list(frames)
    assert rest[-1].event == "auth" and "signed out" in rest[-1].data["reason"]
    unauthorized(tab.refresh())
    unauthorized(tab.get("/api/me"))


def test_cookie_routes_refuse_cross_site_requests_and_pages_carry_security_headers(
    make_server: Any,
) -> None:
    server = make_server()
    tab = Browser(server)
    r = tab.c.post("/auth/refresh", headers={"Origin": "http://evil.test"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert tab.c.post("/auth/refresh", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert (
        tab.c.post(
            "/auth/refresh", headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        ).status_code
        == 200
    )
    cookie = next(c for c in tab.c.cookies.jar if c.name == "tether_refresh")
    assert cookie.path == "/auth" and cookie.has_nonstandard_attr("HttpOnly")
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" in page.text and 'src="/static/app.js"' in page.text


def test_bad_sign_in_bodies(shared_server: Server) -> None:
    """A body that is not JSON is a 400; JSON that is not what /auth takes (a field too
    long, of the wrong type, or not an object) is a 422 naming the field; a
    well-formed body whose credentials are missing, incomplete or wrong is a 401 that says
    how to sign in."""
    url = shared_server.url + "/auth"
    for body, status, field in [
        ({"secret": "x" * 600}, 422, "secret"),
        ({"secret": 5}, 422, "secret"),
        ({"username": ["a"], "password": "p"}, 422, "username"),
        ({"password": "p" * 2000, "username": "a"}, 422, "password"),
        ([], 422, None),
    ]:
        r = httpx.post(url, json=body)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        if field is not None:
            assert [e["loc"] for e in r.json()["errors"]] == [["body", field]], r.text
    r = httpx.post(url, content=b"{secret:", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    # Fields /auth does not take are ignored, as on every route.
    for body in ({}, {"username": "a"}, {"password": "p"}, {"token": "x"}, {"secret": "wrong"}):
        assert "POST /auth" in unauthorized(httpx.post(url, json=body)), body
    r = httpx.post(url, json={"username": "nobody", "password": "wrong"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "wrong user name or password"
