"""The built-in batch agent end to end, against a real server and SQLite file."""

from __future__ import annotations

from tests.helpers.server import Api


def test_forty_items_complete_with_a_full_tree_and_summary(api: Api) -> None:
    sid = api.session()
    items = [f"item number {i}" for i in range(40)]
    root = api.start(sid, "batch", {"items": items, "delay_s": 0.01})
    done = api.wait_status(root["id"], "completed", "failed", timeout=120)
    assert done["status"] == "completed", done
    assert done["progress"] == {"n": 40, "m": 40}

    tree = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"]
    assert [t["id"] for t in tree] == [root["id"]]
    children = tree[0]["children"]
    assert len(children) == 40
    assert all(c["status"] == "completed" and c["agent"] == "item" for c in children)
    assert [c["input"]["index"] for c in children] == list(range(40))

    summary = done["result"]
    assert summary["count"] == 40 and summary["succeeded"] == 40 and summary["failed"] == 0
    assert [r["item"] for r in summary["results"]] == items
    assert [r["index"] for r in summary["results"]] == list(range(40))

    events = api.all_events(sid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    progress = [
        e["data"]["n"]
        for e in events
        if e["task_id"] == root["id"] and e["type"] == "task.progress"
    ]
    assert progress == list(range(41))
    assert sum(e["type"] == "item.result" for e in events) == 40
    assert events[-1]["type"] == "task.status" and events[-1]["data"]["status"] == "completed"


def test_parallel_batch_runs_items_concurrently(api: Api) -> None:
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(12)), "delay_s": 0.3, "parallel": 4})
    done = api.wait_status(root["id"], "completed", "failed", timeout=60)
    assert done["status"] == "completed"
    events = api.all_events(sid)
    # With 4 at a time, some child starts before an earlier one has finished.
    running = 0
    peak = 0
    for e in events:
        if e["type"] == "task.status" and e["parent_task_id"] == root["id"]:
            running += 1 if e["data"]["status"] == "running" else -1
            peak = max(peak, running)
    assert peak == 4
    assert [r["item"] for r in done["result"]["results"]] == list(range(12))


def test_a_failing_item_is_reported_and_the_batch_continues(api: Api) -> None:
    sid = api.session()
    root = api.start(sid, "batch", {"items": ["a", "b"], "delay_s": 0, "item_agent": "failing"})
    done = api.wait_status(root["id"], "completed", "failed")
    assert done["status"] == "completed"
    assert done["result"]["failed"] == 2
    child = api.task(done["children"][0])
    assert child["status"] == "failed"
    assert child["error"] == {"type": "RuntimeError", "message": "boom"}


def test_on_error_fail_fails_the_batch(api: Api) -> None:
    sid = api.session()
    root = api.start(
        sid,
        "batch",
        {"items": ["a", "b"], "delay_s": 0, "item_agent": "failing", "on_error": "fail"},
    )
    done = api.wait_status(root["id"], "completed", "failed")
    assert done["status"] == "failed"
    assert done["error"]["type"] == "DelegationFailed"
    # The second item never started: the batch stopped at the first failure.
    assert len(done["children"]) == 1


def test_each_items_last_step_and_its_end_are_one_commit(api: Api) -> None:
    # What a delegation costs: the item's last step does not wait for its own commit, so its
    # events, its step record and its completion land together (one commit: one timestamp).
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(5)), "delay_s": 0.01})
    assert api.wait_status(root["id"], "completed", "failed", timeout=60)["status"] == "completed"
    events = api.all_events(sid)
    for child in {e["task_id"] for e in events if e["type"] == "item.result"}:
        mine = [e for e in events if e["task_id"] == child]
        result = next(e for e in mine if e["type"] == "item.result")
        end = mine[-1]
        assert (end["type"], end["data"]["status"]) == ("task.status", "completed"), end
        assert end["ts"] == result["ts"] and end["seq"] == result["seq"] + 1, (result, end)
