"""kill -9, SIGTERM and code changes: tasks resume or say truthfully why they cannot."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.helpers.server import Api, Server, counter_lines, sse_frames, wait_until


def read_stream_until(server: Server, sid: str, after: int, stop: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with server.client(timeout=30) as c:
        with c.stream(
            "GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(after)}
        ) as r:
            assert r.status_code == 200
            for f in sse_frames(r):
                if f.event == "message":
                    out.append(f.data)
                if stop(out, f):
                    return out
    return out


def test_kill_9_mid_child_step_resumes_without_rerunning_completed_steps(
    make_server: Any, database_env: dict[str, str]
) -> None:
    # Parents re-check their children often, as they do when a child takes long: whatever a
    # wait does must not become part of the parent's recorded history, or the replay breaks.
    # On the embedded SQLite file and on Postgres (DBOS's system database and our tables).
    server = make_server(TETHER_CHILD_POLL_S="0.1", **database_env)
    api = Api(server.client())
    sid = api.session()
    root = api.start(
        sid, "batch", {"items": list(range(6)), "delay_s": 0.6, "item_agent": "counted_item"}
    )["id"]
    # Follow the stream until item 2's step is running, then kill the server outright.
    before = read_stream_until(
        server,
        sid,
        0,
        lambda evs, f: any(e["type"] == "item.started" and e["data"]["index"] == 2 for e in evs),
    )
    wait_until(lambda: "run 2" in counter_lines(server), what="item 2's step to start")
    server.kill()
    assert "done 2" not in counter_lines(server)

    server.start()  # same data dir, same port
    api = Api(server.client())
    done = api.wait_status(root, "completed", "failed", timeout=60)
    assert done["status"] == "completed", done
    assert [r["index"] for r in done["result"]["results"]] == list(range(6))

    runs = Counter(counter_lines(server))
    # Completed steps did not run again; only the one in flight at the kill re-ran.
    assert runs["run 0"] == runs["run 1"] == 1
    assert runs["run 2"] == 2
    assert all(runs[f"run {i}"] == 1 for i in range(3, 6))
    assert all(runs[f"done {i}"] == 1 for i in range(6))

    log = api.all_events(sid)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    # On Postgres, nothing went to a SQLite file on the side.
    assert (server.data_dir / "tether.db").exists() == (not database_env)
    # Nothing was appended twice: each item started and finished exactly once in the log.
    assert Counter(e["data"]["index"] for e in log if e["type"] == "item.result") == {
        i: 1 for i in range(6)
    }
    assert Counter(e["data"]["index"] for e in log if e["type"] == "item.started") == {
        i: 1 for i in range(6)
    }
    statuses = [(e["task_id"], e["data"]["status"]) for e in log if e["type"] == "task.status"]
    assert len(statuses) == len(set(statuses))

    # The client that was following resumes from its last seq and sees the rest exactly once.
    last = before[-1]["seq"]
    rest = read_stream_until(server, sid, last, lambda evs, f: len(evs) == len(log) - last)
    assert before + rest == log


def test_sigterm_closes_streams_with_a_retry_hint_and_loses_nothing(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(8)), "delay_s": 0.4})["id"]
    raw: list[str] = []
    with server.client(timeout=30) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            lines = r.iter_lines()
            for line in lines:
                raw.append(line)
                if line.startswith("data: ") and '"item.result"' in line:
                    break
            server.proc.send_signal(15)  # SIGTERM while the stream is open
            for line in lines:  # the server must end the stream by itself
                raw.append(line)
    assert "event: shutdown" in raw
    assert any(line.startswith("retry: ") for line in raw[raw.index("event: shutdown") - 1 :])
    wait_until(lambda: server.proc.poll() is not None, timeout=20, what="server to exit")
    server.proc = None
    seen = [json.loads(line[6:]) for line in raw if line.startswith('data: {"seq"')]

    server.start()
    api = Api(server.client())
    done = api.wait_status(root, "completed", "failed", timeout=60)
    assert done["status"] == "completed"
    log = api.all_events(sid)
    last = seen[-1]["seq"]
    rest = read_stream_until(server, sid, last, lambda evs, f: len(evs) == len(log) - last)
    assert seen + rest == log


def test_task_left_running_by_other_code_is_interrupted_with_the_reason(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(TETHER_APP_VERSION="v1")
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(5)), "delay_s": 1.0})["id"]
    wait_until(lambda: len(api.task(root)["children"]) >= 1, what="first child")
    server.kill()

    server.start(TETHER_APP_VERSION="v2")
    api = Api(server.client())
    task = api.wait_status(root, "interrupted", timeout=30)
    assert "v1" in task["error"]["message"] and "v2" in task["error"]["message"]
    for child_id in task["children"]:
        assert api.task(child_id)["status"] in ("interrupted", "completed")
    tree = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"]
    assert tree[0]["status"] == "interrupted"
    # Nothing is left looking like it runs.
    assert all(c["status"] != "running" for c in tree[0]["children"])
    # And it stays that way: no stray resumption appends after the interruption.
    head = api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
    server.terminate()
    server.start(TETHER_APP_VERSION="v2")
    api = Api(server.client())
    assert api.c.get(f"/api/sessions/{sid}").json()["head_seq"] == head
    assert api.task(root)["status"] == "interrupted"
