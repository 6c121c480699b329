"""Renaming and deleting sessions, their state in the list, and reading the log backwards:
what the web app's sidebar and "Load earlier" rely on, tried as a careless or hostile caller."""

from __future__ import annotations

from typing import Any

from tests.helpers.server import Api, Server, add_user, user_client

PROBLEM = "application/problem+json"


def test_rename_and_delete_are_owner_only_and_refuse_bad_input(shared_server: Server) -> None:
    api = Api(shared_server.client())
    sid = api.session("before")
    r = api.c.patch(f"/api/sessions/{sid}", json={"title": "  after  "})
    assert r.status_code == 200 and r.json()["title"] == "after"
    listed = {s["id"]: s for s in api.c.get("/api/sessions").json()["sessions"]}
    assert listed[sid]["title"] == "after" and listed[sid]["state"] == "empty"
    for body in ({"title": ""}, {"title": "   "}, {"title": "x" * 201}, {"name": "x"}, {}):
        r = api.c.patch(f"/api/sessions/{sid}", json=body)
        assert r.status_code in (400, 422) and r.headers["content-type"] == PROBLEM, body
    assert api.c.get(f"/api/sessions/{sid}").json()["title"] == "after"

    add_user(shared_server, "mallory", "mallory-password-1")
    other = user_client(shared_server, "mallory", "mallory-password-1")
    assert other.patch(f"/api/sessions/{sid}", json={"title": "mine"}).status_code == 404
    assert other.delete(f"/api/sessions/{sid}").status_code == 404
    assert api.c.get(f"/api/sessions/{sid}").json()["title"] == "after"
    assert api.c.delete("/api/sessions/s_nope").status_code == 404
    # Each rename is in the session's log (every tab that follows it retitles), refusals not.
    renames = [e for e in api.all_events(sid) if e["type"] == "session.renamed"]
    assert [(e["task_id"], e["data"]) for e in renames] == [(None, {"title": "after"})]


def test_delete_refuses_while_a_task_runs_then_removes_everything(shared_server: Server) -> None:
    api = Api(shared_server.client())
    sid = api.session("doomed")
    keep = api.session("kept")
    kept_task = api.start(keep, "one_item", {"item": "stays"})["id"]
    root = api.start(sid, "batch", {"items": [1, 2, 3], "delay_s": 0.3})["id"]
    api.wait_status(root, "running")
    states = {s["id"]: s for s in api.c.get("/api/sessions").json()["sessions"]}
    assert states[sid]["state"] == "running" and states[sid]["tasks"] == 1
    r = api.c.delete(f"/api/sessions/{sid}")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert "unfinished" in r.json()["detail"]
    api.wait_status(root, "completed")
    states = {s["id"]: s for s in api.c.get("/api/sessions").json()["sessions"]}
    assert states[sid]["state"] == "completed"
    assert api.c.delete(f"/api/sessions/{sid}").status_code == 204
    for path in (f"/api/sessions/{sid}", f"/api/sessions/{sid}/events", f"/api/tasks/{root}"):
        assert api.c.get(path).status_code == 404, path
    assert sid not in {s["id"] for s in api.c.get("/api/sessions").json()["sessions"]}
    # Nothing of the other session went with it.
    api.wait_status(kept_task, "completed")
    assert [e["seq"] for e in api.all_events(keep)] == list(
        range(1, api.c.get(f"/api/sessions/{keep}").json()["head_seq"] + 1)
    )


def test_reading_the_log_backwards_is_exact(shared_server: Server) -> None:
    api = Api(shared_server.client())
    sid = api.session("backwards")
    root = api.start(sid, "batch", {"items": list(range(12)), "delay_s": 0})["id"]
    api.wait_status(root, "completed")
    log = api.all_events(sid)
    head = log[-1]["seq"]
    got: list[dict[str, Any]] = []
    before = head + 1
    while True:
        page = api.c.get(
            f"/api/sessions/{sid}/events", params={"before": before, "limit": 7}
        ).json()
        assert [e["seq"] for e in page["events"]] == sorted(e["seq"] for e in page["events"])
        got = page["events"] + got
        if not page["more"]:
            break
        before = page["next_before"]
    assert got == log  # every event once, in order, the same envelopes as forwards
    empty = api.c.get(f"/api/sessions/{sid}/events", params={"before": 1}).json()
    assert empty["events"] == [] and empty["more"] is False
    both = api.c.get(f"/api/sessions/{sid}/events", params={"after": 3, "before": 9}).json()
    assert [e["seq"] for e in both["events"]] == [4, 5, 6, 7, 8] and both["more"] is False
    for bad in ({"before": "-1"}, {"before": "x"}, {"before": "1e3"}):
        r = api.c.get(f"/api/sessions/{sid}/events", params=bad)
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, bad


def test_brief_tree_leaves_out_results_and_large_inputs(shared_server: Server) -> None:
    api = Api(shared_server.client())
    sid = api.session("brief")
    big = ["x" * 100] * 40  # over 2 KiB of input
    root = api.start(sid, "batch", {"items": big[:3] + ["small"], "delay_s": 0})["id"]
    big_root = api.start(sid, "batch", {"items": big, "delay_s": 0})["id"]
    api.wait_status(root, "completed")
    api.wait_status(big_root, "completed")
    full = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"]
    brief = api.c.get(f"/api/sessions/{sid}/tasks", params={"brief": "true"}).json()["tasks"]
    assert [t["id"] for t in brief] == [t["id"] for t in full]
    assert full[0]["result"]["count"] == 4 and brief[0]["result"] is None
    assert brief[0]["input"] == full[0]["input"]  # small: kept (the page names tasks by it)
    assert brief[1]["input"] is None and brief[1]["status"] == "completed"
    assert [c["input"] for c in brief[0]["children"]] == [c["input"] for c in full[0]["children"]]

    def same(b: dict[str, Any], f: dict[str, Any]) -> None:  # all else as the full tree says
        assert b.keys() == f.keys()
        for k in b.keys() - {"result", "input", "children"}:
            assert b[k] == f[k], k
        for bc, fc in zip(b["children"], f["children"], strict=True):
            same(bc, fc)

    for b, f in zip(brief, full, strict=True):
        same(b, f)
