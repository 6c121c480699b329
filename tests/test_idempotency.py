"""Idempotency-Key: a retry gets the task the first try started, once; a key belongs to
one route (and one session, one user), and the same key with another body is a 422."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_session
from tests.helpers.server import Api


def _post(api: Api, path: str, body: Any, key: str) -> httpx.Response:
    return api.c.post(path, json=body, headers={"Idempotency-Key": key})


def _created(api: Api, sid: str, task_id: str) -> int:
    return sum(
        1 for e in api.all_events(sid) if e["type"] == "task.created" and e["task_id"] == task_id
    )


def _unprocessable(r: httpx.Response) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in r.json()["detail"]


def test_idempotency_keys_on_tasks_and_messages(
    make_server: Any,
    fake_llm: RunningFakeLLM,
    tmp_path: Path,
    database_env: dict[str, str],
) -> None:
    _server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[], **database_env)
    tasks, messages = f"/api/sessions/{sid}/tasks", f"/api/sessions/{sid}/messages"
    batch = {"agent": "batch", "input": {"items": [1, 2]}}

    # The same request twice with one key: one task, answered 201 then 200.
    first = _post(api, tasks, batch, "k-1")
    assert first.status_code == 201, first.text
    again = _post(api, tasks, batch, "k-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert _created(api, sid, first.json()["id"]) == 1
    # The same key with another body: 422, and no task started.
    before = len(api.c.get(tasks).json()["tasks"])
    _unprocessable(_post(api, tasks, {"agent": "batch", "input": {"items": [1, 3]}}, "k-1"))
    _unprocessable(_post(api, tasks, {"agent": "one_item", "input": {"item": 1}}, "k-1"))
    assert len(api.c.get(tasks).json()["tasks"]) == before

    # A message with the key of that batch task is a message (a new turn), not the batch.
    msg = {"text": "words 2"}
    turn = _post(api, messages, msg, "k-1")
    assert turn.status_code == 201, turn.text
    assert turn.json()["id"] != first.json()["id"] and turn.json()["agent"] == "assistant"
    retry = _post(api, messages, msg, "k-1")
    assert retry.status_code == 200 and retry.json()["id"] == turn.json()["id"]
    assert _created(api, sid, turn.json()["id"]) == 1
    _unprocessable(_post(api, messages, {"text": "words 3"}, "k-1"))
    api.wait_status(turn.json()["id"], "completed")
    # A retry after the turn ended (another turn may follow it now) is still the same turn.
    retry = _post(api, messages, msg, "k-1")
    assert retry.status_code == 200 and retry.json()["id"] == turn.json()["id"]

    # Regenerating with a key: once; the same key to regenerate another turn is a 422.
    path = f"/api/tasks/{turn.json()['id']}/regenerate"
    regen = _post(api, path, None, "k-2")
    assert regen.status_code == 201, regen.text
    assert _post(api, path, None, "k-2").json()["id"] == regen.json()["id"]
    api.wait_status(regen.json()["id"], "completed")
    other = say_turn = _post(api, messages, {"text": "words 1"}, "k-3")
    assert say_turn.status_code == 201
    api.wait_status(other.json()["id"], "completed")
    _unprocessable(_post(api, f"/api/tasks/{other.json()['id']}/regenerate", None, "k-2"))

    # One key in another session is another session's task.
    sid2 = api.session("two")
    there = _post(api, f"/api/sessions/{sid2}/tasks", batch, "k-1")
    assert there.status_code == 201 and there.json()["id"] != first.json()["id"]
    api.wait_status(first.json()["id"], "completed")
    api.wait_status(there.json()["id"], "completed")
