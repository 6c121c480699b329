"""Cancel is its own call: it stops the task and its children at once, everywhere."""

from __future__ import annotations

import time
from typing import Any

from tests.helpers.server import Api, counter_lines, slow_batch_with_a_running_child, wait_until


def test_cancel_stops_task_and_children_within_a_second(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    root = api.start(
        sid,
        "batch",
        {"items": list(range(9)), "delay_s": 30, "parallel": 3, "item_agent": "counted_item"},
    )["id"]
    wait_until(
        lambda: sorted(counter_lines(server)) == ["run 0", "run 1", "run 2"],
        what="3 running children",
    )

    t0 = time.monotonic()
    r = api.c.post(f"/api/tasks/{root}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    def all_cancelled() -> bool:
        tree = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"][0]
        return tree["status"] == "cancelled" and all(
            c["status"] == "cancelled" for c in tree["children"]
        )

    wait_until(all_cancelled, timeout=1.0, what="the whole tree to be cancelled")
    assert time.monotonic() - t0 < 1.0
    tree = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"][0]
    assert len(tree["children"]) == 3  # no child started after the cancel

    # The work really stopped: each child's coroutine was cancelled (each records that it
    # stopped), no step finished, and nothing more was appended after the stop.
    stopped = {"stopped 0", "stopped 1", "stopped 2"}
    wait_until(
        lambda: stopped <= set(counter_lines(server)), timeout=5, what="the children to stop"
    )
    head = api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
    log = api.all_events(sid)
    assert log[-1]["seq"] == head
    cancelled = {
        e["task_id"]
        for e in log
        if e["type"] == "task.status" and e["data"]["status"] == "cancelled"
    }
    assert cancelled == {root, *(c["id"] for c in tree["children"])}
    assert not any(line.startswith("done") for line in counter_lines(server))

    # Cancelling again is harmless, and a restart does not bring the task back: once a task
    # started after the restart has completed (recovery runs before it), none of the
    # cancelled ones ran again.
    assert api.c.post(f"/api/tasks/{root}/cancel").json()["status"] == "cancelled"
    server.kill()
    server.start()
    api = Api(server.client())
    probe = api.start(api.session("probe"), "one_item", {"item": "x"})["id"]
    api.wait_status(probe, "completed")
    assert api.task(root)["status"] == "cancelled"
    assert api.c.get(f"/api/sessions/{sid}").json()["head_seq"] == head
    runs = [line for line in counter_lines(server) if not line.startswith("stopped")]
    assert sorted(runs) == ["run 0", "run 1", "run 2"], runs


def test_cancel_of_one_child_lets_the_batch_continue(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    _, root, child = slow_batch_with_a_running_child(server, api)
    assert api.c.post(f"/api/tasks/{child}/cancel").json()["status"] == "cancelled"
    wait_until(lambda: "run 1" in counter_lines(server), timeout=5, what="the next item")
    assert api.task(root)["status"] == "running"
    api.c.post(f"/api/tasks/{root}/cancel")
