"""When the machine or DBOS fails a task, the task says so, its parent goes on, and nothing
is duplicated: retention after kill -9, DBOS refusing a replay, a full disk, cancel races."""

from __future__ import annotations

import errno
import random
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers.server import Api, counter_lines, slow_batch_with_a_running_child, wait_until

ENDED = ("completed", "failed", "cancelled", "interrupted")


def test_retention_after_kill_9_neither_duplicates_events_nor_fails_replays(
    make_server: Any,
) -> None:
    server = make_server(TETHER_RETENTION_EVENTS="20")
    api = Api(server.client())
    tsid, bsid = api.session("ticks"), api.session("batch")
    ticker = api.start(tsid, "tick_then_hold", {"ticks": 150, "hold_s": 60})["id"]
    batch = api.start(
        bsid, "batch", {"items": list(range(30)), "delay_s": 0.05, "item_agent": "counted_item"}
    )["id"]
    wait_until(lambda: "ticked" in counter_lines(server), what="the ticks to be committed")
    wait_until(lambda: "run 25" in counter_lines(server), timeout=60, what="item 25")
    ticks = api.c.get(f"/api/sessions/{tsid}").json()
    assert ticks["head_seq"] == 152 and ticks["first_seq"] > 100  # created, running, 150 ticks
    assert api.c.get(f"/api/sessions/{bsid}").json()["first_seq"] > 50  # early children pruned
    server.kill()

    server.start()
    api = Api(server.client())
    # The tick step re-runs after the crash and re-emits its 150 keys: none is appended again.
    done = api.wait_status(ticker, *ENDED, timeout=60)
    assert done["status"] == "completed", done
    page = api.c.get(f"/api/sessions/{tsid}/events", params={"after": 152}).json()
    assert [e["type"] for e in page["events"]] == ["ticks.done", "task.status"], page
    # The batch replays the starts of children whose rows outlived their pruned events.
    done = api.wait_status(batch, *ENDED, timeout=90)  # used to fail: IntegrityError
    assert done["status"] == "completed", done
    assert [r["index"] for r in done["result"]["results"]] == list(range(30))


def test_a_replay_that_runs_other_steps_fails_the_task_with_the_reason_and_its_parent_goes_on(
    make_server: Any,
) -> None:
    server = make_server(TETHER_CHILD_POLL_S="0.2")
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "batch", {"items": [0], "delay_s": 0, "item_agent": "nondeterministic"})[
        "id"
    ]
    wait_until(lambda: "holding" in counter_lines(server), what="the child's second step")
    server.kill()
    server.start()  # the replay runs other steps than were recorded: it is refused
    api = Api(server.client())
    child = api.task(root)["children"][0]
    failed = api.wait_status(child, *ENDED, timeout=30)
    assert failed["status"] == "failed", failed
    assert failed["error"]["type"] == "NotDeterministic"
    assert "'first-run-step'" in failed["error"]["message"], failed
    done = api.wait_status(root, *ENDED, timeout=30)
    assert done["status"] == "completed" and done["result"]["failed"] == 1, done


def test_a_parent_settles_a_child_whose_workflow_ended_without_an_outcome(
    make_server: Any,
) -> None:
    server = make_server(TETHER_CHILD_POLL_S="0.2")
    api = Api(server.client())
    _, root, child = slow_batch_with_a_running_child(server, api, "counted_workflow_item")
    # DBOS ends the child's workflow (as when it runs out of recovery attempts) while nothing
    # of Tether's recorded an outcome.
    with sqlite3.connect(server.data_dir / "tether.db", timeout=30) as db:
        db.execute(
            "UPDATE workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' "
            "WHERE workflow_uuid = ?",
            (child,),
        )
    failed = api.wait_status(child, *ENDED, timeout=10)
    assert failed["status"] == "failed" and "MAX_RECOVERY_ATTEMPTS_EXCEEDED" in str(failed["error"])
    wait_until(lambda: "run 1" in counter_lines(server), timeout=10, what="the parent to go on")
    api.c.post(f"/api/tasks/{root}/cancel")


def test_cancel_leaves_nothing_unfinished_under_the_root(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    rng = random.Random(8)
    for run in range(8):  # it used to leave a child queued in about half the runs
        cancel_mid_fan_out(api, f"run {run}", rng.randint(1, 30))


def cancel_mid_fan_out(api: Api, name: str, after_children: int) -> None:
    sid = api.session(name)
    root = api.start(sid, "batch", {"items": list(range(48)), "delay_s": 0.02, "parallel": 16})[
        "id"
    ]
    wait_until(
        lambda: len(api.task(root)["children"]) >= after_children,
        what=f"{after_children} children",
    )
    assert api.c.post(f"/api/tasks/{root}/cancel").json()["status"] == "cancelled"

    def settled() -> list[dict[str, Any]] | None:
        kids = api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"][0]["children"]
        return kids if all(k["status"] in ENDED for k in kids) else None

    kids = wait_until(settled, timeout=5, what=f"{name}: every child ended")
    # Whatever had not finished when cancel came is cancelled, not merely left behind.
    assert {k["status"] for k in kids} <= {"completed", "cancelled"}, kids


@contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A real filesystem of `size_mb` (tmpfs) mounted at path: a disk that can fill up."""
    path.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"this test mounts a small tmpfs (needs root): {out.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk with one file; deleting it gives them back."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_full_disk_answers_503_and_each_outcome_is_recorded_once_there_is_room(
    make_server: Any, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", 96) as disk:
        server = make_server(data_dir=disk)
        try:
            api = Api(server.client())
            sid = api.session()
            task = api.start(
                sid, "big_events", {"count": 100_000, "size": 20_000, "pause_s": 0.01}
            )["id"]
            wait_until(lambda: api.task(task)["last_seq"] > 10, what="the task to write")

            filler = fill(disk)
            # Writes go on while the log can reuse room it already has; soon none is left.
            refused = wait_until(
                lambda: (
                    (r := api.c.post("/api/sessions", json={"title": "x" * 200})).status_code != 201
                    and r
                ),
                timeout=60,
                interval=0.01,
                what="a write to be refused",
            )
            big = {"agent": "one_item", "input": {"item": "x" * 500_000}}
            for r in (refused, api.c.post(f"/api/sessions/{sid}/tasks", json=big)):
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert "database or disk is full" in r.json()["detail"]
                assert r.headers["retry-after"]
            # The task cannot write its events, so it fails; its failure cannot be written
            # either, so it is retried, and reads keep answering meanwhile.
            wait_until(lambda: "could not record task" in server.log(), what="a retried outcome")
            assert api.task(task)["status"] == "running"

            filler.unlink()
            done = api.wait_status(task, *ENDED, timeout=30)  # no restart needed
            assert done["status"] == "failed"
            assert "database or disk is full" in done["error"]["message"]
            assert api.c.post("/api/sessions", json={"title": "after"}).status_code == 201
            log = api.all_events(sid)
            assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        finally:
            server.stop()
