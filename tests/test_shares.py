"""A share link reads one session, live, and nothing else; its owner revokes it at once.

Real servers on real SQLite files (and two processes on one Postgres database for the
revocation that crosses processes). Streams run with heartbeats far apart: a stream that
ends was told, not polled.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import Api, Server, add_user, sse_frames, user_client, wait_until

PROBLEM = "application/problem+json"
QUIET = {"TETHER_HEARTBEAT_S": "600"}  # no heartbeat during a test: nothing polls


def share(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    r = api.c.post(f"/api/sessions/{sid}/shares", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def reader(server: Server, token: str, timeout: float = 30) -> httpx.Client:
    """Whoever holds the link: its token, and no other credentials."""
    return httpx.Client(
        base_url=server.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
    )


def refused(r: httpx.Response, *statuses: int) -> str:
    r.read()  # (a stream's answer too)
    assert r.status_code in (statuses or (401,)), (r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM
    return str(r.json()["detail"])


class Ids(dict[str, str]):
    """Path parameters; any other (an AG-UI thread, say) is the shared session."""

    def __missing__(self, key: str) -> str:
        return self["session_id"]


class Follower:
    """A stream followed on a thread, as a viewer's page follows it."""

    def __init__(self, server: Server, token: str, sid: str) -> None:
        self.frames: list[Any] = []
        self.opened = threading.Event()
        self.status = 0
        self.t = threading.Thread(target=self._run, args=(server, token, sid), daemon=True)
        self.t.start()
        assert self.opened.wait(30), "the stream did not open"

    def _run(self, server: Server, token: str, sid: str) -> None:
        with reader(server, token, timeout=60) as c:
            with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
                self.status = r.status_code
                self.opened.set()
                for f in sse_frames(r):
                    self.frames.append(f)

    def ended(self) -> Any:
        """The stream's last frame, once it has ended (a read past 60 s fails the join)."""
        self.t.join(60)
        assert not self.t.is_alive(), "the stream did not end"
        return self.frames[-1]


def test_a_share_link_reads_its_session_and_nothing_else(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session("shared")
    other = api.session("not shared")
    task = api.start(sid, "batch", {"items": ["a", "b"]})["id"]
    other_task = api.start(other, "batch", {"items": ["c"]})["id"]
    api.wait_status(task, "completed")
    api.wait_status(other_task, "completed")
    link = share(api, sid, label="for Ann")
    assert link["url"].endswith(f"/#share={link['token']}") and link["expired"] is False
    kept = share(api, other)  # the owner's other link, which this token must not touch

    spec = api.c.get("/openapi.json").json()
    ids = Ids(
        session_id=sid,
        task_id=task,
        share_id=kept["id"],
        approval_id="ap_x",
        path="notes.txt",
    )
    reads = {
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/tasks",
        "/api/sessions/{session_id}/events",
        "/api/sessions/{session_id}/conversation",
        "/api/sessions/{session_id}/files",
        "/api/tasks/{task_id}",
        "/api/share",
    }
    allowed: list[str] = []
    with reader(server, link["token"]) as c:
        for path, item in spec["paths"].items():
            for method in item:
                if path in ("/healthz", "/auth/logout"):
                    continue  # open to anyone; logout only clears the caller's cookie
                url = path.format_map(ids)
                if path.endswith("/stream"):
                    with c.stream(method, url) as r:
                        status = r.status_code
                else:
                    status = c.request(method, url, json={}).status_code
                if method == "get" and (path in reads or path.endswith("/stream")):
                    assert status == 200, (method, path, status)
                    allowed.append(path)
                    # The same read of the owner's other session: not found, as another
                    # user's is.
                    elsewhere = path.format_map(Ids(ids, session_id=other, task_id=other_task))
                    if elsewhere != url:
                        if path.endswith("/stream"):
                            with c.stream(method, elsewhere) as r:
                                refused(r, 404)
                        else:
                            refused(c.get(elsewhere), 404)
                else:
                    assert status in (401, 403, 404, 405), (method, path, status)
        assert len(allowed) == len(reads) + 1  # and the stream
        assert c.get(f"/api/sessions/{sid}/files/notes.txt").status_code == 404  # no such file
        # The token as the bootstrap secret is a wrong secret.
        r = httpx.get(
            server.url + "/api/sessions", headers={"x-web-bootstrap-secret": link["token"]}
        )
        refused(r, 401)
        assert c.get("/api/share").json() == {
            "session_id": sid,
            "label": "for Ann",
            "expires_at": None,
        }
    # Nothing changed: the owner's sessions, tasks and links are as they were.
    listed = api.c.get("/api/sessions").json()["sessions"]
    assert {s["id"] for s in listed} == {sid, other}
    assert [s["id"] for s in api.c.get(f"/api/sessions/{other}/shares").json()["shares"]] == [
        kept["id"]
    ]
    assert api.task(task)["status"] == "completed"


def test_links_are_made_listed_and_revoked_by_the_owner_only(shared_server: Server) -> None:
    api = Api(shared_server.client())
    sid = api.session()
    link = share(api, sid, expires_in_s=3600)
    add_user(shared_server, "eve", "correct horse battery")
    eve = user_client(shared_server, "eve", "correct horse battery")
    try:
        refused(eve.post(f"/api/sessions/{sid}/shares", json={}), 404)
        refused(eve.get(f"/api/sessions/{sid}/shares"), 404)
        refused(eve.delete(f"/api/shares/{link['id']}"), 404)
    finally:
        eve.close()
    listed = api.c.get(f"/api/sessions/{sid}/shares").json()["shares"]
    assert [(s["id"], s["expired"]) for s in listed] == [(link["id"], False)]
    assert "token" not in listed[0] and "url" not in listed[0]  # shown once, when made
    for bad in ({"expires_in_s": 0}, {"expires_in_s": "soon"}, {"label": "x" * 201}):
        refused(api.c.post(f"/api/sessions/{sid}/shares", json=bad), 422)
    with reader(shared_server, link["token"]) as c:
        assert c.get(f"/api/sessions/{sid}").status_code == 200
        assert api.c.delete(f"/api/shares/{link['id']}").status_code == 204
        assert "revoked" in refused(c.get(f"/api/sessions/{sid}"))
    assert api.c.get(f"/api/sessions/{sid}/shares").json()["shares"] == []
    with reader(shared_server, "tsh_" + "x" * 43) as c:
        assert "unknown share link" in refused(c.get(f"/api/sessions/{sid}"))


def test_a_viewer_follows_live_and_revoking_closes_the_stream_at_once(make_server: Any) -> None:
    server = make_server(**QUIET)
    api = Api(server.client())
    sid = api.session()
    link = share(api, sid)
    viewer = Follower(server, link["token"], sid)
    assert viewer.status == 200
    root = api.start(sid, "batch", {"items": ["x", "y"]})["id"]
    wait_until(
        lambda: any(f.id and f.data.get("task_id") == root for f in viewer.frames),
        what="the batch's events, live, at the viewer",
    )
    assert api.c.delete(f"/api/shares/{link['id']}").status_code == 204
    last = viewer.ended()
    assert last.event == "auth" and "revoked" in last.data["reason"]
    with reader(server, link["token"]) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            assert r.status_code == 401


def test_an_expired_link_reads_nothing_and_its_stream_ends_when_it_expires(
    make_server: Any,
) -> None:
    server = make_server(**QUIET)
    api = Api(server.client())
    sid = api.session()
    link = share(api, sid, expires_in_s=2)
    viewer = Follower(server, link["token"], sid)
    last = viewer.ended()  # at its expiry, not at a heartbeat (600 s away)
    assert last.event == "auth" and "expired" in last.data["reason"]
    with reader(server, link["token"]) as c:
        assert "expired" in refused(c.get(f"/api/sessions/{sid}/events"))
    listed = api.c.get(f"/api/sessions/{sid}/shares").json()["shares"]
    assert [s["expired"] for s in listed] == [True]


def test_a_link_outlives_a_server_restart_and_a_revocation_does_too(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "batch", {"items": ["a"]})["id"]
    api.wait_status(root, "completed")
    live, dead = share(api, sid), share(api, sid)
    assert api.c.delete(f"/api/shares/{dead['id']}").status_code == 204
    server.terminate()
    server.start()
    with reader(server, live["token"]) as c:
        events = c.get(f"/api/sessions/{sid}/events").json()["events"]
        assert events and events[-1]["seq"] == api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
        # Resume as a reload does: from the last seq seen, nothing again.
        with c.stream(
            "GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(events[-2]["seq"])}
        ) as r:
            frames = sse_frames(r)
            assert next(frames).event == "snapshot"
            assert int(next(frames).id or 0) == events[-1]["seq"]
    with reader(server, dead["token"]) as c:
        assert "revoked" in refused(c.get(f"/api/sessions/{sid}"))


def test_revoking_at_one_process_closes_the_links_streams_at_another(make_server: Any) -> None:
    with fresh_database() as url:
        env = shared_env(url, **QUIET)
        a = make_server(TETHER_EXECUTOR_ID="a", **env)
        b = make_server(TETHER_EXECUTOR_ID="b", **env)
        api = Api(a.client())
        sid = api.session()
        link = share(api, sid)
        viewer = Follower(b, link["token"], sid)
        assert viewer.status == 200
        assert api.c.delete(f"/api/shares/{link['id']}").status_code == 204
        last = viewer.ended()
        assert last.event == "auth" and "revoked" in last.data["reason"]
