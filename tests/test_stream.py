"""The SSE stream against a real uvicorn server: resume is exact, whatever the disconnects."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.helpers.server import Api, Server, sse_frames


def follow_with_disconnects(
    server: Server, sid: str, root: str, api: Api, *, seed: int, mode: str, min_drops: int = 20
) -> tuple[list[dict[str, Any]], int]:
    """Read the stream, hanging up after a random number of events, and resume each time
    from the last seq seen (by Last-Event-ID or ?after=). Returns the events and drop count."""
    rng = random.Random(seed)
    seen: list[dict[str, Any]] = []
    drops = 0
    last = 0
    while True:
        headers = {"Last-Event-ID": str(last)} if mode == "header" and last else {}
        params = {"after": last} if mode == "query" else {}
        budget = rng.randint(1, 8)
        finished = False
        with server.client(timeout=10) as c:
            with c.stream(
                "GET", f"/api/sessions/{sid}/stream", headers=headers, params=params
            ) as r:
                assert r.status_code == 200, r.read()
                frames = sse_frames(r)
                first = next(frames)
                assert first.event == "snapshot" and first.id is None
                for f in frames:
                    if f.event != "message":
                        # A heartbeat with nothing new: is the task over?
                        if f.event == "heartbeat" and api.task(root)["status"] == "completed":
                            head = api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
                            if last == head:
                                finished = True
                                break
                        continue
                    assert f.id == str(f.data["seq"])
                    seen.append(f.data)
                    last = f.data["seq"]
                    budget -= 1
                    if budget == 0:
                        break
        if finished:
            return seen, drops
        drops += 1


@pytest.mark.parametrize("mode", ["header", "query"])
def test_random_disconnects_resume_exactly(make_server: Any, mode: str) -> None:
    server = make_server()
    with server.client() as c:
        api = Api(c)
        sid = api.session()
        root = api.start(sid, "batch", {"items": list(range(40)), "delay_s": 0.1})["id"]
        seen, drops = follow_with_disconnects(server, sid, root, api, seed=7, mode=mode)
        log = api.all_events(sid)
        # Disconnects happened while the task was running, not after.
        assert drops >= 20
        assert [e["seq"] for e in seen] == list(range(1, len(log) + 1))
        assert seen == log

        # A late joiner from after=0 sees the identical sequence, in one go.
        with c.stream("GET", f"/api/sessions/{sid}/stream", params={"after": 0}) as r:
            late = []
            for f in sse_frames(r):
                if f.event == "message":
                    late.append(f.data)
                if len(late) == len(log):
                    break
        assert late == log


def test_snapshot_first_then_backlog_then_live_with_headers_and_heartbeats(
    shared_server: Server, api: Api
) -> None:
    sid = api.session()
    first = api.start(sid, "one_item", {"item": "x"})
    api.wait_status(first["id"], "completed")
    with shared_server.client(timeout=10) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["x-accel-buffering"] == "no"
            assert "content-encoding" not in r.headers
            frames = sse_frames(r)
            snap = next(frames)
            assert snap.event == "snapshot"
            assert snap.data["head_seq"] == len(api.all_events(sid))
            assert [t["status"] for t in snap.data["tasks"]] == ["completed"]
            backlog = [next(frames) for _ in range(snap.data["head_seq"])]
            assert [f.data["seq"] for f in backlog] == list(range(1, snap.data["head_seq"] + 1))
            beat = next(frames)
            assert beat.event == "heartbeat" and beat.id is None
            assert beat.data["head_seq"] == snap.data["head_seq"]
            assert abs(beat.data["server_time"] - time.time()) < 5
            # Live: a new task's events arrive on the open stream.
            second = api.start(sid, "one_item", {"item": "y"})
            live = None
            for f in frames:
                if f.event == "message":
                    live = f
                    break
            assert live is not None and live.data["seq"] == snap.data["head_seq"] + 1
            assert live.data["task_id"] == second["id"]


def test_second_tab_sees_the_same_events(shared_server: Server, api: Api) -> None:
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(5)), "delay_s": 0.05})["id"]
    api.wait_status(root, "completed")
    log = api.all_events(sid)

    def read_all() -> list[dict[str, Any]]:
        out = []
        with shared_server.client(timeout=10) as c:
            with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
                for f in sse_frames(r):
                    if f.event == "message":
                        out.append(f.data)
                        if len(out) == len(log):
                            return out
        return out

    assert read_all() == log
    assert read_all() == log


def test_events_pages_follow_the_cursor(api: Api) -> None:
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(6)), "delay_s": 0})["id"]
    api.wait_status(root, "completed")
    log = api.all_events(sid)
    pages, after = [], 0
    while True:
        page = api.c.get(f"/api/sessions/{sid}/events", params={"after": after, "limit": 7}).json()
        pages.append(page["events"])
        after = page["next_after"]
        if not page["more"]:
            break
    assert [e for p in pages for e in p] == log
    assert all(len(p) == 7 for p in pages[:-1])


def test_a_resuming_client_can_ask_for_a_snapshot_without_the_task_list(
    shared_server: Server, api: Api
) -> None:
    """A page that has just read the tree resumes with ?tasks=0: the snapshot says the head
    and the task count, the events after the cursor say every change; nonsense is a 400."""
    sid = api.session()
    done = api.start(sid, "one_item", {"item": "x"})
    api.wait_status(done["id"], "completed")
    head = len(api.all_events(sid))
    with shared_server.client(timeout=10) as c:
        with c.stream(
            "GET", f"/api/sessions/{sid}/stream", params={"tasks": 0, "after": head}
        ) as r:
            assert r.status_code == 200
            frames = sse_frames(r)
            snap = next(frames)
            assert snap.event == "snapshot"
            assert snap.data["tasks"] == [] and snap.data["task_count"] == 1
            assert snap.data["head_seq"] == head
            second = api.start(sid, "one_item", {"item": "y"})
            live = next(f for f in frames if f.event == "message")
            assert live.data["seq"] == head + 1 and live.data["task_id"] == second["id"]
        for bad in ("-1", "x", "99999999999"):
            r = c.get(f"/api/sessions/{sid}/stream", params={"tasks": bad})
            assert r.status_code == 400, (bad, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
