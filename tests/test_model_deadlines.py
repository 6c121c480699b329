"""A model that is slow, stalls or breaks off, against the local server speaking the
providers' wire formats: every call has a deadline (`call_timeout_s`), every turn too
(`turn_timeout_s`), and a stream that ends without the provider's end marker is a broken call
(retried, the retry superseding what was shown), not a finished reply."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import control, messages_by_id, model_session, say
from tests.helpers.server import Api
from tests.test_model_agents import _assert_streams_well_formed, approval_request


def _done(api: Api, task_id: str, timeout: float = 60) -> dict[str, Any]:
    return api.wait_status(
        task_id, "completed", "failed", "cancelled", "interrupted", timeout=timeout
    )


def _shown_error(api: Api, sid: str, task: dict[str, Any]) -> str:
    """The failure as the chat shows it (the turn's RUN_ERROR), which is the task's error."""
    shown = [e["data"]["message"] for e in api.all_events(sid) if e["type"] == "RUN_ERROR"]
    assert shown == [task["error"]["message"]]
    return str(shown[0])


def test_a_trickling_stream_is_cut_at_call_timeout_and_the_turn_fails_clearly(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, extra="call_timeout_s = 1\nmax_retries = 1"
    )
    # A word every 0.2 s, never ending: each read is quick, so only a deadline ends it.
    control(fake_llm, faults=[{"trickle_s": 0.2}, {"trickle_s": 0.2}])
    began = time.monotonic()
    done = _done(api, say(api, sid, "words 3")["id"])
    took = time.monotonic() - began
    assert done["status"] == "failed", done
    assert took < 20, took  # 2 attempts of 1 s and one backoff of at most 2 s, plus slack
    message = _shown_error(api, sid, done)
    assert "did not finish its reply within 1 s (call_timeout_s)" in message
    events = api.all_events(sid)
    retries = [e["data"] for e in events if e["type"] == "model.retry"]
    assert len(retries) == 1 and "call_timeout_s" in retries[0]["reason"]
    # What the first attempt had shown is superseded by the second.
    sup = [e["data"] for e in events if e["type"] == "message.superseded"]
    starts = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(starts) == 2 and [s["messageIds"] for s in sup] == [starts[:1]]
    assert "took longer than 1 s (call_timeout_s)" in sup[0]["reason"]
    _assert_streams_well_formed(events)
    # The next message is not stuck behind the failed turn, and answers.
    again = _done(api, say(api, sid, "words 2")["id"])
    assert again["status"] == "completed", again


def test_a_turn_past_turn_timeout_fails_with_a_message_a_person_understands(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, extra="turn_timeout_s = 2\ncall_timeout_s = 60"
    )
    control(fake_llm, tokens_per_s=5)  # 100 words: 20 s, well under call_timeout_s
    began = time.monotonic()
    done = _done(api, say(api, sid, "words 100")["id"])
    took = time.monotonic() - began
    assert done["status"] == "failed", done
    assert took < 15, took
    message = _shown_error(api, sid, done)
    assert "the turn took longer than 2 s" in message
    assert "turn_timeout_s" in message and "'assistant'" in message
    assert not any(e["type"] == "model.retry" for e in api.all_events(sid))


def test_time_waiting_for_a_persons_approval_is_not_the_turns(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, extra="turn_timeout_s = 5")
    turn = say(api, sid, "write notes.txt: draft")
    req = approval_request(api, sid)
    time.sleep(6)  # the person takes longer than the turn's whole limit (what is tested)
    url = f"/api/tasks/{turn['id']}/approvals/{req['data']['approvalId']}"
    assert api.c.post(url, json={"decision": "approve"}).status_code == 200
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done.get("error")
    assert done["result"]["text"].startswith("Done: ")  # the model answered after the tool


@pytest.mark.parametrize("main", ["anthropic", "openai"])
def test_a_stream_cut_without_its_end_marker_is_retried_and_only_the_retry_is_the_reply(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path, main: str
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, main=main)
    # Three words, then the connection closes cleanly, without message_stop / finish_reason.
    control(fake_llm, faults=[{"cut_after": 3}])
    done = _done(api, say(api, sid, "words 10")["id"])
    assert done["status"] == "completed", done
    events = api.all_events(sid)
    _assert_streams_well_formed(events)
    retries = [e["data"] for e in events if e["type"] == "model.retry"]
    assert len(retries) == 1, retries
    starts = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    sup = [e["data"] for e in events if e["type"] == "message.superseded"]
    assert len(starts) == 2 and [s["messageIds"] for s in sup] == [starts[:1]]
    assert "broke off" in sup[0]["reason"]
    texts = messages_by_id(events)
    assert len(texts[starts[0]].split()) == 3  # what was cut
    # The reply is the retry's, whole, and only once.
    assert texts[starts[1]] == done["result"]["text"]
    assert done["result"]["text"].count("w0") == 1 and done["result"]["text"].endswith("w9")
    asked = [r for r in fake_llm.fake.brain.requests if r["api"] == main]
    assert len(asked) == 2
