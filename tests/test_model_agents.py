"""Model agents against a local server speaking the providers' real streaming wire formats
(Anthropic Messages SSE, OpenAI Chat Completions SSE, tool-call deltas included), with a real
Tether server and SQLite file: conversations, parallel delegation, kill -9 mid-reply and
mid-sub-agent, approvals across a restart, provider faults."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import (
    control,
    messages_by_id,
    model_server,
    model_session,
    say,
    waited_for,
    workspace_file,
)
from tests.helpers.server import Api, sse_frames, wait_until


def _done(api: Api, task_id: str, timeout: float = 60) -> dict[str, Any]:
    return api.wait_status(
        task_id, "completed", "failed", "cancelled", "interrupted", timeout=timeout
    )


def approval_request(api: Api, sid: str) -> dict[str, Any]:
    return dict(
        wait_until(
            lambda: next(
                (e for e in api.all_events(sid) if e["type"] == "approval.requested"), None
            ),
            what="the approval request",
        )
    )


def _user_texts(request: dict[str, Any]) -> list[str]:
    """The user-typed texts a provider request carried (either wire format)."""
    out = []
    for m in request["body"]["messages"]:
        if m["role"] != "user":
            continue
        c = m["content"]
        if isinstance(c, str):
            out.append(c)
        else:
            out.extend(b["text"] for b in c if b.get("type") == "text")
    return out


def _assert_streams_well_formed(events: list[dict[str, Any]]) -> None:
    """Gapless seqs; every message starts once, ends once, with its deltas in between; and
    nothing of a superseded message comes after its superseding."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    state: dict[str, str] = {}
    superseded: set[str] = set()
    for e in events:
        d = e["data"]
        if e["type"] == "message.superseded":
            superseded.update(d["messageIds"])
            continue
        mid = d.get("messageId") if e["type"].startswith("TEXT_MESSAGE") else None
        if mid is None:
            continue
        assert mid not in superseded, f"{e['type']} of superseded {mid} at seq {e['seq']}"
        if e["type"] == "TEXT_MESSAGE_START":
            assert mid not in state, f"{mid} started twice"
            state[mid] = "open"
        elif e["type"] == "TEXT_MESSAGE_CONTENT":
            assert state.get(mid) == "open", f"delta of {mid} outside its message"
        else:
            assert state.get(mid) == "open"
            state[mid] = "ended"


@pytest.mark.parametrize("main", ["anthropic", "openai"])
def test_a_conversation_that_delegates_to_two_sub_agents_at_once(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path, main: str
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, main=main)
    # The helpers stream slowly enough that running one after the other would not overlap.
    control(fake_llm, tokens_per_s=40)
    first = say(api, sid, "hello there")
    second = say(api, sid, "please delegate: alpha | beta")  # queues behind the first
    third = say(api, sid, "words 5 and remember what I said")
    turns = [_done(api, t["id"]) for t in (first, second, third)]
    assert [t["status"] for t in turns] == ["completed"] * 3, turns
    assert [waited_for(api, sid, t["id"]) for t in turns] == [None, first["id"], second["id"]]

    # Two sub-agents, on the other provider, ran at the same time.
    helpers = [api.task(c) for c in turns[1]["children"]]
    assert [h["agent"] for h in helpers] == ["helper", "helper"]
    assert [h["input"]["text"] for h in helpers] == ["alpha", "beta"]
    assert max(h["started_at"] for h in helpers) < min(h["ended_at"] for h in helpers)
    # The delegating turn answered with both sub-agents' results.
    assert all(h["result"]["text"] in turns[1]["result"]["text"] for h in helpers)

    # Each turn saw the conversation so far: the third model request carried turns 1 and 2.
    asked = [r for r in fake_llm.fake.brain.requests if r["api"] == main]
    assert _user_texts(asked[-1])[:3] == [
        "hello there",
        "please delegate: alpha | beta",
        "words 5 and remember what I said",
    ]

    # The log holds every delta once, in order, and it adds up to each turn's answer.
    events = api.all_events(sid)
    _assert_streams_well_formed(events)
    texts = messages_by_id(events)
    for t in [*turns, *helpers]:
        mine = [e for e in events if e["task_id"] == t["id"] and e["type"] == "TEXT_MESSAGE_START"]
        assert texts[mine[-1]["data"]["messageId"]] == t["result"]["text"]
    # Tool calls streamed their arguments, and their results are in the log.
    calls = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert [c["data"]["toolCallName"] for c in calls] == ["delegate", "delegate"]
    args = Counter()
    for e in events:
        if e["type"] == "TOOL_CALL_ARGS":
            args[e["data"]["toolCallId"]] += 1
    assert all(args[c["data"]["toolCallId"]] >= 1 for c in calls)
    results = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert sorted(r["data"]["toolCallId"] for r in results) == sorted(
        c["data"]["toolCallId"] for c in calls
    )

    # The stream from 0 is the same sequence as the REST pages.
    with server.client(timeout=30) as c, c.stream("GET", f"/api/sessions/{sid}/stream") as r:
        streamed = []
        for f in sse_frames(r):
            if f.event == "message":
                streamed.append(f.data)
                if f.data["seq"] == events[-1]["seq"]:
                    break
    assert streamed == events


def test_kill_9_mid_reply_supersedes_the_partial_and_never_interleaves(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=30)
    turn = say(api, sid, "words 80")
    wait_until(
        lambda: sum(e["type"] == "TEXT_MESSAGE_CONTENT" for e in api.all_events(sid)) >= 5,
        what="part of the reply",
    )
    server.kill()
    partial = api_events_offline(server, sid)
    server.start()
    api = Api(server.client())
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done

    events = api.all_events(sid)
    assert events[: len(partial)] == partial  # what was committed stays, as it was
    _assert_streams_well_formed(events)
    sup = [e for e in events if e["type"] == "message.superseded"]
    assert len(sup) == 1
    starts = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(starts) == 2 and sup[0]["data"]["messageIds"] == [starts[0]]
    assert "restarted" in sup[0]["data"]["reason"]
    texts = messages_by_id(events)
    assert texts[starts[1]] == done["result"]["text"]
    assert texts[starts[0]] != texts[starts[1]]  # the model was asked again, and said more
    assert len([r for r in fake_llm.fake.brain.requests if _user_texts(r) == ["words 80"]]) == 2


def api_events_offline(server: Any, sid: str) -> list[dict[str, Any]]:
    """The session's events as the database holds them, read with the server down."""
    import json
    import sqlite3

    db = sqlite3.connect(server.data_dir / "tether.db")
    rows = db.execute(
        "SELECT seq, session_id, task_id, parent_task_id, type, data, ts FROM tether_events "
        "WHERE session_id = ? ORDER BY seq",
        (sid,),
    ).fetchall()
    db.close()
    keys = ("seq", "session_id", "task_id", "parent_task_id", "type", "data", "ts")
    return [{**dict(zip(keys, r, strict=True)), "data": json.loads(r[5])} for r in rows]


def test_kill_9_mid_sub_agent_reruns_only_what_was_in_flight(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, TETHER_CHILD_POLL_S="0.2")
    control(fake_llm, tokens_per_s=25)
    turn = say(api, sid, "delegate: words 2 | words 60")
    wait_until(
        lambda: (
            (kids := api.task(turn["id"])["children"])
            and len(kids) == 2
            and api.task(kids[0])["status"] == "completed"
            and sum(
                e["type"] == "TEXT_MESSAGE_CONTENT" and e["task_id"] == kids[1]
                for e in api.all_events(sid)
            )
            >= 4
        ),
        what="the short sub-agent done and the long one mid-reply",
    )
    server.kill()
    server.start()
    api = Api(server.client())
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done

    asked = Counter(tuple(_user_texts(r)) for r in fake_llm.fake.brain.requests)
    # The delegating call and the finished sub-agent were not asked again; the sub-agent
    # in flight was (and its partial reply is superseded); then the parent's last call.
    assert asked[("delegate: words 2 | words 60",)] == 2  # the delegating call + the answer
    assert asked[("words 2",)] == 1
    assert asked[("words 60",)] == 2
    events = api.all_events(sid)
    _assert_streams_well_formed(events)
    kids = done["children"]
    sup = [e for e in events if e["type"] == "message.superseded"]
    assert [e["task_id"] for e in sup] == [kids[1]]
    created = [e for e in events if e["type"] == "task.created" and e["parent_task_id"]]
    assert [e["task_id"] for e in created] == kids  # each sub-agent created once


def test_an_approval_waits_across_a_restart_and_is_answered_once(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    turn = say(api, sid, "write notes.txt: first draft")
    req = approval_request(api, sid)
    aid = req["data"]["approvalId"]
    assert req["data"]["tool"] == "write_file"
    assert req["data"]["args"] == {"path": "notes.txt", "content": "first draft"}
    sessions = api.c.get("/api/sessions").json()["sessions"]
    assert next(s for s in sessions if s["id"] == sid)["needs_you"] == 1
    assert workspace_file(api, sid, "notes.txt") is None

    server.kill()
    server.start()
    api = Api(server.client())
    assert api.task(turn["id"])["status"] == "running"
    url = f"/api/tasks/{turn['id']}/approvals/{aid}"
    assert api.c.post(url, json={"decision": "maybe"}).status_code == 422
    r = api.c.post(url, json={"decision": "approve", "note": "go ahead"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    again = api.c.post(url, json={"decision": "deny"})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert (
        api.c.post(
            f"/api/tasks/{turn['id']}/approvals/ap_nope", json={"decision": "deny"}
        ).status_code
        == 404
    )

    done = _done(api, turn["id"])
    assert done["status"] == "completed", done
    assert workspace_file(api, sid, "notes.txt") == "first draft"
    answered = [e for e in api.all_events(sid) if e["type"] == "approval.answered"]
    assert len(answered) == 1 and answered[0]["data"]["decision"] == "approve"
    assert (
        api.c.get(f"/api/tasks/{turn['id']}/approvals").json()["approvals"][0]["status"]
        == "approved"
    )
    assert (
        next(s for s in api.c.get("/api/sessions").json()["sessions"] if s["id"] == sid)[
            "needs_you"
        ]
        == 0
    )
    # Ended: nothing waits any more.
    assert api.c.post(url, json={"decision": "deny"}).status_code == 409


def test_a_denied_tool_call_does_not_run_and_the_model_hears_why(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    turn = say(api, sid, "write secret.txt: nope")
    req = approval_request(api, sid)
    url = f"/api/tasks/{turn['id']}/approvals/{req['data']['approvalId']}"
    assert api.c.post(url, json={"decision": "deny", "note": "not today"}).status_code == 200
    done = _done(api, turn["id"])
    assert done["status"] == "completed"
    assert workspace_file(api, sid, "secret.txt") is None
    assert "denied" in done["result"]["text"] and "not today" in done["result"]["text"]


def test_approvals_are_owner_only(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    from tests.helpers.server import add_user, user_client

    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    turn = say(api, sid, "write a.txt: x")
    req = approval_request(api, sid)
    add_user(server, "mallory", "correct horse battery")
    other = user_client(server, "mallory", "correct horse battery")
    try:
        url = f"/api/tasks/{turn['id']}/approvals/{req['data']['approvalId']}"
        assert other.post(url, json={"decision": "approve"}).status_code == 404
        assert other.get(f"/api/tasks/{turn['id']}/approvals").status_code == 404
        other_sid = other.post("/api/sessions", json={}).json()["id"]
        assert other.post(f"/api/sessions/{sid}/messages", json={"text": "hi"}).status_code == 404
        assert (
            other.post(f"/api/sessions/{other_sid}/messages", json={"text": "hi"}).status_code
            == 201
        )
    finally:
        other.close()
    assert api.task(turn["id"])["status"] == "running"  # still waiting for its owner
    api.c.post(f"/api/tasks/{turn['id']}/cancel")


def test_rate_limits_and_overload_are_retried_and_shown(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    control(fake_llm, faults=[{"status": 429, "retry_after": 1}, {"status": 529, "retry_after": 0}])
    turn = say(api, sid, "words 3")
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done
    events = api.all_events(sid)
    retries = [e["data"] for e in events if e["type"] == "model.retry"]
    assert [(r["status"], r["delay_s"]) for r in retries] == [(429, 1.0), (529, 0.0)]
    assert "rate limited" in retries[0]["reason"]
    asked = [r for r in fake_llm.fake.brain.requests if _user_texts(r) == ["words 3"]]
    assert len(asked) == 3 and asked[1]["at"] - asked[0]["at"] >= 0.95  # Retry-After honoured
    assert not any(e["type"] == "message.superseded" for e in events)  # nothing was shown yet


def test_a_provider_401_fails_the_turn_with_its_message(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, TETHER_TEST_ANTHROPIC_KEY="sk-bad-key"
    )
    done = _done(api, say(api, sid, "hello")["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "ModelFailed"
    assert (
        "HTTP 401" in done["error"]["message"] and "invalid x-api-key" in done["error"]["message"]
    )
    events = api.all_events(sid)
    assert [e["data"]["message"] for e in events if e["type"] == "RUN_ERROR"] == [
        done["error"]["message"]
    ]
    assert not any(e["type"] == "model.retry" for e in events)  # a 401 is not retried
    # The next message is not stuck behind the failed turn.
    again = _done(api, say(api, sid, "hello again")["id"])
    assert again["status"] == "failed" and waited_for(api, sid, again["id"]) is None


def test_an_agent_without_its_key_is_listed_as_not_ready(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    # Configured, but the key is not set: listed as not ready, and a message says which.
    keyless = model_server(make_server, fake_llm, tmp_path, TETHER_TEST_ANTHROPIC_KEY="")
    api = Api(keyless.client())
    agents = {a["name"]: a for a in api.c.get("/api/agents").json()["agents"]}
    assert agents["assistant"]["kind"] == "model" and agents["assistant"]["ready"] is False
    assert "TETHER_TEST_ANTHROPIC_KEY" in agents["assistant"]["problem"]
    assert agents["helper"]["ready"] is True
    sid = api.session()
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": "hi"})
    assert r.status_code == 422 and "TETHER_TEST_ANTHROPIC_KEY" in r.json()["detail"]
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": "hi", "agent": "nobody"})
    assert r.status_code == 422 and "assistant" in r.json()["detail"]
    for bad in ({}, {"text": ""}, {"text": 5}, {"text": "x" * 100_001}):
        assert api.c.post(f"/api/sessions/{sid}/messages", json=bad).status_code == 422
    assert api.all_events(sid) == []  # nothing was recorded


def test_a_bad_agents_file_is_refused_at_start_with_the_reason(tmp_path: Path) -> None:
    from tests.helpers.server import Server

    path = tmp_path / "agents.toml"
    path.write_text('[agents.a]\nmodel = "anthropic:x"\ndelegates = ["ghost"]\n')
    d = tmp_path / "data"
    d.mkdir()
    s = Server(d, env={"TETHER_AGENTS_FILE": str(path)})
    with pytest.raises(AssertionError, match="ghost"):
        s.start()


def test_tools_stay_inside_the_workspace_and_the_allow_list(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[])
    (server.data_dir / "outside.txt").write_text("private")
    escape = _done(api, say(api, sid, "read ../../outside.txt")["id"])
    assert "outside the workspace" in escape["result"]["text"]
    assert "private" not in escape["result"]["text"]
    far = _done(api, say(api, sid, "fetch http://127.0.0.2:1/x")["id"])
    assert "allow-list" in far["result"]["text"]
    near = _done(api, say(api, sid, f"fetch {fake_llm.url}/_requests")["id"])
    assert "HTTP 200" in near["result"]["text"]
    wrote = _done(api, say(api, sid, "write sub/ok.txt: hello")["id"])
    assert wrote["status"] == "completed"
    assert workspace_file(api, sid, "sub/ok.txt") == "hello"
    back = _done(api, say(api, sid, "read sub/ok.txt")["id"])
    assert "hello" in back["result"]["text"]
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_a_turn_that_keeps_calling_tools_stops_at_max_rounds_and_says_so(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, approval=[], extra="max_rounds = 1"
    )
    done = _done(api, say(api, sid, "read anything.txt")["id"])
    assert done["status"] == "failed"
    assert "max_rounds" in done["error"]["message"]


def test_an_mcp_servers_tools_are_the_agents_and_run_once(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    import sys

    from tests.helpers.server import ROOT, counter_lines

    script = ROOT / "tests" / "helpers" / "mcp_calc.py"
    # A command table, its env taken from the server's own (a stdio child gets no other).
    entry = (
        f'{{ command = "{sys.executable}", args = ["{script}"], '
        'env = { TETHER_TEST_COUNTER = "${TETHER_TEST_COUNTER}" } }'
    )
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, approval=["fail"], extra=f"mcp = [{entry}]"
    )
    assert api.c.get("/api/agents").json()["agents"][0]["mcp"] == [sys.executable]
    done = _done(api, say(api, sid, "mcp add a=2 b=3")["id"])
    assert done["status"] == "completed", done
    assert done["result"]["text"] == "Done: 5"
    assert [x for x in counter_lines(server) if not x.startswith("mcp start")] == ["mcp add 2 3"]
    # The model was offered the server's tools, with their schemas.
    offered = fake_llm.fake.brain.requests[0]["body"]["tools"]
    add = next(t for t in offered if t["name"] == "add")
    assert add["input_schema"]["required"] == ["a", "b"]
    # A tool's own error is the model's to read (the SDK's server says only that the tool
    # failed); approval applies to MCP tools too.
    turn = say(api, sid, "mcp fail reason=broken")
    req = approval_request(api, sid)
    assert req["data"]["tool"] == "fail" and req["data"]["args"] == {"reason": "broken"}
    url = f"/api/tasks/{turn['id']}/approvals/{req['data']['approvalId']}"
    assert api.c.post(url, json={"decision": "approve"}).status_code == 200
    failed = _done(api, turn["id"])
    assert failed["status"] == "completed"  # the tool failed, not the turn
    assert "the tool fail failed" in failed["result"]["text"]


def test_an_agents_file_naming_a_missing_mcp_script_is_refused(tmp_path: Path) -> None:
    from tether.llm import config
    from tether.llm.config import AgentsFileError

    path = tmp_path / "agents.toml"
    path.write_text('[agents.a]\nmodel = "openai:x"\nmcp = ["nowhere.py"]\n')
    with pytest.raises(AgentsFileError, match="nowhere.py"):
        config.load(path)


def test_a_turn_with_a_large_tool_result_keeps_a_bounded_history(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[])
    # A file an earlier version left on the disk: imported into the database at start.
    (server.data_dir / "workspaces" / sid).mkdir(parents=True)
    (server.data_dir / "workspaces" / sid / "big.txt").write_text("y" * 90_000)
    server.kill()
    server.start()
    api = Api(server.client())
    assert not (server.data_dir / "workspaces").exists()
    assert workspace_file(api, sid, "big.txt") == "y" * 90_000
    done = _done(api, say(api, sid, "read big.txt")["id"])
    assert done["status"] == "completed", done
    assert len(done["result"]["text"]) > 90_000  # the model saw all of it, this turn
    kept = [
        p["content"]
        for m in done["result"]["messages"]
        for p in m["parts"]
        if p.get("part_kind") == "tool-return"
    ]
    assert len(kept) == 1 and len(kept[0]) < 17_000 and "characters cut here" in kept[0]
    nxt = _done(api, say(api, sid, "words 3")["id"])
    assert nxt["status"] == "completed"
