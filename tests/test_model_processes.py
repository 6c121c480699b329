"""Model calls in model processes (`model_processes`, the default): the provider's stream is
read in a child of the server, which sends back the reply's events coalesced. What a reader
of the log sees is what it saw when the call ran in the server: every token once, in order;
a cancel stops the provider call; a model process that dies mid-reply costs a retry, never
a hung or half-shown turn."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import control, messages_by_id, model_session, say
from tests.helpers.server import Api, Server, wait_until


def model_processes(server: Server) -> list[int]:
    """The pids of the server's model processes (its children running model_process)."""
    assert server.proc is not None
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == server.proc.pid and b"tether.llm.model_process" in cmd:
            out.append(int(d.name))
    return out


def _done(api: Api, task_id: str) -> dict[str, Any]:
    # Generous: a model process's start is seconds of CPU, more on a busy machine.
    return api.wait_status(task_id, "completed", "failed", "cancelled", "interrupted", timeout=180)


def _contents(api: Api, sid: str) -> list[dict[str, Any]]:
    return [e for e in api.all_events(sid) if e["type"] == "TEXT_MESSAGE_CONTENT"]


def test_a_reply_from_a_model_process_has_every_token_once_in_order_coalesced(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=400)
    turn = say(api, sid, "words 300")
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done
    assert model_processes(server), "the call ran in the server, not in a model process"

    events = api.all_events(sid)
    text = done["result"]["text"]
    words = text.split(" ")
    assert len(words) == 306 and words[-1] == "w299"  # the fake's head, then w0 .. w299
    (message,) = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert messages_by_id(events) == {message: text}  # each token once, in order
    deltas = _contents(api, sid)
    assert 1 < len(deltas) < len(words)  # coalesced (at most 20 a second), not one per token
    kinds = [e["type"] for e in events if e["type"].startswith("TEXT_MESSAGE")]
    assert kinds == [
        "TEXT_MESSAGE_START",
        *["TEXT_MESSAGE_CONTENT"] * len(deltas),
        "TEXT_MESSAGE_END",
    ]


def test_cancelling_a_turn_stops_its_provider_call_in_the_model_process(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=20)
    turn = say(api, sid, "stamped 100000")  # about 80 minutes of reply
    wait_until(lambda: _contents(api, sid), timeout=180, what="the reply's first tokens")
    assert model_processes(server)
    (request,) = fake_llm.fake.brain.requests
    assert not request["ended"]
    api.c.post(f"/api/tasks/{turn['id']}/cancel").raise_for_status()
    assert _done(api, turn["id"])["status"] == "cancelled"
    # The model process closed the provider's stream (it would run for 80 minutes).
    wait_until(lambda: request["ended"], what="the provider's stream to be closed")
    assert len(fake_llm.fake.brain.requests) == 1  # and did not call again


def test_a_model_process_killed_mid_reply_retries_the_call_and_supersedes_its_part(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=40)
    turn = say(api, sid, "words 80")
    wait_until(lambda: len(_contents(api, sid)) >= 3, timeout=180, what="part of the reply")
    (pid,) = model_processes(server)  # one call so far: one process started
    os.kill(pid, signal.SIGKILL)
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done

    events = api.all_events(sid)
    (retry,) = [e["data"] for e in events if e["type"] == "model.retry"]
    assert "model process" in retry["reason"] and "signal 9" in retry["reason"]
    starts = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    (sup,) = [e["data"] for e in events if e["type"] == "message.superseded"]
    assert len(starts) == 2 and sup["messageIds"] == [starts[0]]
    assert "broke off" in sup["reason"]
    texts = messages_by_id(events)
    assert texts[starts[1]] == done["result"]["text"]  # the new attempt's, whole, once
    # The lost attempt's message was ended, and nothing of it comes after its supersession.
    ends = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_END"]
    assert ends == starts
    at = next(i for i, e in enumerate(events) if e["type"] == "message.superseded")
    assert all(e["data"].get("messageId") != starts[0] for e in events[at:])
    assert pid not in model_processes(server)  # a new process took the call
