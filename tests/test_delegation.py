"""Sub-agents run inside their parent's workflow: a task ends after its sub-agents, a failed
one cancels them, and steps (with the exceptions they raised, and durable sleeps) are replayed
from their records after kill -9, at any depth."""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

from tests.helpers.server import Api, counter_lines, wait_until

ENDED = ("completed", "failed", "cancelled", "interrupted")


def test_a_task_that_returns_ends_after_the_sub_agents_it_did_not_wait_for(
    make_server: Any,
) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "spawn_and_leave", {"hold_s": 1.5, "then": "return"})["id"]
    wait_until(lambda: any(line.startswith("holding ") for line in counter_lines(server)))
    # Its body has returned, but its sub-agent still holds: the task is still running.
    assert api.task(root)["status"] == "running"
    done = api.wait_status(root, *ENDED, timeout=30)
    child = api.task(done["children"][0])
    assert (done["status"], done["result"]) == ("completed", "returned"), done
    assert (child["status"], child["result"]) == ("completed", "held"), child
    assert child["ended_at"] <= done["ended_at"]
    # The parent's outcome is the last status in the session's log.
    statuses = [
        (e["task_id"], e["data"]["status"])
        for e in api.all_events(sid)
        if e["type"] == "task.status"
    ]
    assert statuses[-1] == (root, "completed"), statuses


def test_a_task_that_fails_cancels_its_running_sub_agents_first(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "spawn_and_leave", {"hold_s": 120, "then": "fail"})["id"]
    done = api.wait_status(root, *ENDED, timeout=30)
    assert done["status"] == "failed" and "while its sub-agent runs" in done["error"]["message"]
    child_id = done["children"][0]
    child = api.task(child_id)
    assert child["status"] == "cancelled", child
    # Its coroutine was stopped, not left running unseen.
    wait_until(lambda: f"cancelled {child_id}" in counter_lines(server), what="the hold to stop")
    reasons = [
        e["data"].get("reason")
        for e in api.all_events(sid)
        if e["type"] == "task.status"
        and e["task_id"] == child_id
        and e["data"]["status"] == "cancelled"
    ]
    assert reasons == ["its parent task failed"], reasons


def test_a_step_that_raised_is_replayed_as_raised_after_kill_9(
    make_server: Any, database_env: dict[str, str]
) -> None:
    server = make_server(**database_env)
    api = Api(server.client())
    sid = api.session()
    # As a sub-agent of a batch, so the replay is the child's, inside its parent's.
    root = api.start(
        sid, "batch", {"items": [0], "delay_s": 0, "item_agent": "step_error_then_hold"}
    )["id"]
    wait_until(lambda: any(line.startswith("holding ") for line in counter_lines(server)))
    server.kill()

    server.start()
    api = Api(server.client())
    done = api.wait_status(root, *ENDED, timeout=60)
    assert done["status"] == "completed", done["error"]
    child = done["result"]["results"][0]
    runs = Counter(line.rsplit(" ", 1)[0] for line in counter_lines(server))
    # The failed step did not run again: its exception came from its record, and the body
    # took the same branch (its one `branch` event was not appended twice).
    assert runs["flaky ran"] == 1 and runs["holding"] == 2, runs
    branches = [e["data"] for e in api.all_events(sid) if e["type"] == "branch"]
    assert branches == [{"branch": "caught LookupError: the first run's failure"}], branches
    assert child == {"branch": "caught LookupError: the first run's failure"}, done["result"]


def test_nested_sub_agents_and_a_durable_sleep_resume_after_kill_9(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    nap_s = 2.0
    root = api.start(sid, "nest_nap", {"depth": 2, "nap_s": nap_s})["id"]

    def napping() -> bool:  # the step before the nap and the nap's wake-up time are recorded
        with sqlite3.connect(server.data_dir / "tether.db", timeout=30) as db:
            return (
                db.execute("SELECT count(*) FROM tether_steps WHERE name = 'sleep'").fetchone()[0]
                == 1
            )

    wait_until(napping, what="the nap to begin")
    server.kill()

    server.start()
    api = Api(server.client())
    done = api.wait_status(root, *ENDED, timeout=60)
    assert done["status"] == "completed", done
    nap = done["result"]["below"]["below"]
    assert nap["depth"] == 0
    # The step before the nap ran once (replayed from its record), and the nap slept its
    # full length overall but not again from where the replay entered it (however long the
    # restart took): the wake-up time was recorded.
    lines = counter_lines(server)
    assert sum(line.startswith("nap began ") for line in lines) == 1, lines
    entered = [float(line.split()[-1]) for line in lines if line.startswith("nap entered ")]
    assert len(entered) == 2, lines
    assert nap["woke"] - nap["began"] >= nap_s
    assert nap["woke"] - entered[-1] < nap_s, (nap, entered)
    # Three tasks, each ended once, each after the one below it.
    tasks = [api.task(root)]
    while tasks[-1]["children"]:
        tasks.append(api.task(tasks[-1]["children"][0]))
    assert [t["status"] for t in tasks] == ["completed"] * 3
    assert tasks[0]["ended_at"] >= tasks[1]["ended_at"] >= tasks[2]["ended_at"]
