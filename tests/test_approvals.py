"""Approvals answer once: concurrent answers from many tabs make one answer; a second answer
is told the one that stands; a pending approval of a task that ended takes no answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_session, say
from tests.helpers.server import SECRET, Api, Server
from tests.test_model_agents import approval_request


def _approvals(api: Api, task_id: str) -> list[dict[str, Any]]:
    return list(api.c.get(f"/api/tasks/{task_id}/approvals").json()["approvals"])


def _answered(api: Api, sid: str) -> list[dict[str, Any]]:
    return [e for e in api.all_events(sid) if e["type"] == "approval.answered"]


def test_concurrent_answers_make_one_answer(
    make_server: Any,
    fake_llm: RunningFakeLLM,
    tmp_path: Path,
    database_env: dict[str, str],
) -> None:
    server: Server
    server, api, sid = model_session(make_server, fake_llm, tmp_path, **database_env)
    turn = say(api, sid, "write notes.txt: draft")
    aid = approval_request(api, sid)["data"]["approvalId"]
    url = f"/api/tasks/{turn['id']}/approvals/{aid}"
    n = 16
    start = threading.Barrier(n)

    def answer(i: int) -> httpx.Response:
        decision = "approve" if i % 2 else "deny"
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"x-web-bootstrap-secret": SECRET}
        ) as c:
            start.wait(30)
            return c.post(url, json={"decision": decision, "note": f"tab {i}"})

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(answer, range(n)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * (n - 1), [(r.status_code, r.text) for r in answers]
    (won,) = (r.json() for r in answers if r.status_code == 200)
    # Each tab that lost is told the answer that stands, whichever guard stopped it.
    for r in answers:
        if r.status_code == 409:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["approval"]["note"] == won["note"], r.text
    stored = _approvals(api, turn["id"])
    assert [(a["status"], a["note"]) for a in stored] == [(won["status"], won["note"])]
    done = api.wait_status(turn["id"], "completed", "failed", "cancelled", timeout=60)
    assert done["status"] == "completed", done
    answered = _answered(api, sid)
    assert [(e["data"]["decision"], e["data"].get("note")) for e in answered] == [
        (won["decision"], won["note"])
    ]
    # After the task ended, another answer is told the one that stands (not only that the
    # task ended): what the other tab shows.
    late = api.c.post(url, json={"decision": "approve"})
    assert late.status_code == 409 and late.headers["content-type"] == "application/problem+json"
    assert late.json()["approval"]["status"] == won["status"], late.text
    assert late.json()["approval"]["note"] == won["note"]


def test_a_pending_approval_of_a_cancelled_task_takes_no_answer(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    _server, api, sid = model_session(make_server, fake_llm, tmp_path)
    turn = say(api, sid, "write notes.txt: draft")
    aid = approval_request(api, sid)["data"]["approvalId"]
    api.c.post(f"/api/tasks/{turn['id']}/cancel").raise_for_status()
    api.wait_status(turn["id"], "cancelled")
    assert [a["status"] for a in _approvals(api, turn["id"])] == ["pending"]
    r = api.c.post(
        f"/api/tasks/{turn['id']}/approvals/{aid}", json={"decision": "approve", "note": "late"}
    )
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert "ended" in r.json()["detail"]
    (a,) = _approvals(api, turn["id"])
    assert (a["status"], a["note"], a["answered_at"], a["answered_by"]) == (
        "pending",
        None,
        None,
        None,
    )
    assert _answered(api, sid) == []
