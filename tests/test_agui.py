"""The AG-UI endpoint against a real server and the local model server: a run with tool
calls and two sub-agents is a valid AG-UI event sequence to the published `@ag-ui/client`
(its own enforcement and verification, from node), and a run joined again after drops
replays exactly. The tests on `db_server` run on SQLite and again on a fresh Postgres
database."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import control, model_server
from tests.helpers.server import ROOT, SECRET, Server, add_user, sse_frames, user_client
from tether.agui import Cursor, RunMap, frame_id, parse_cursor
from tether.model import Event

NODE_MODULES = ROOT / "tests" / "e2e" / "node_modules"
CLIENT = ROOT / "tests" / "agui" / "agui_client.cjs"
PROBLEM = "application/problem+json"


def node(*args: str, stdin: str | None = None) -> dict[str, Any]:
    exe = shutil.which("node")
    assert exe, "node is needed (./dev test installs it)"
    assert (NODE_MODULES / "@ag-ui" / "client").is_dir(), "npm ci --prefix tests/e2e"
    out = subprocess.run(
        [exe, str(CLIENT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert out.returncode == 0, out.stderr[-6000:] + out.stdout[-2000:]
    return dict(json.loads(out.stdout))


def run_input(thread: str, run: str, text: str) -> dict[str, Any]:
    return {
        "threadId": thread,
        "runId": run,
        "messages": [{"id": f"u-{run}", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    }


def read_until_end(
    r: httpx.Response, stop_after: int | None = None
) -> tuple[list[tuple[str, Any]], bool]:
    """(id, event) frames of an AG-UI stream until it ends, or `stop_after` frames; and
    whether the run's end (RUN_FINISHED / RUN_ERROR) was among them."""
    got: list[tuple[str, Any]] = []
    for f in sse_frames(r):
        assert f.id is not None, f
        got.append((f.id, f.data))
        if f.data["type"] in ("RUN_FINISHED", "RUN_ERROR"):
            return got, True
        if stop_after is not None and len(got) >= stop_after:
            return got, False
    return got, False


@pytest.fixture
def server(make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path) -> Server:
    """A server with the model agents on the embedded SQLite file."""
    return model_server(make_server, fake_llm, tmp_path)


@pytest.fixture
def db_server(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path, database_env: dict[str, str]
) -> Server:
    """The same on SQLite, then on a fresh Postgres database (`database_env`)."""
    return model_server(make_server, fake_llm, tmp_path, **database_env)


def test_a_run_with_tool_calls_and_two_sub_agents_is_a_valid_agui_run(
    db_server: Server, fake_llm: RunningFakeLLM
) -> None:
    control(fake_llm, tokens_per_s=200)  # the two helpers overlap
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    out = node("run", db_server.url + "/api/agui", SECRET, thread, run, "delegate: alpha | beta")
    events = out["events"]
    types = [e["type"] for e in events]
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED", types
    assert events[0]["threadId"] == thread and events[0]["runId"] == run
    started = [e for e in events if e["type"] == "SUBAGENT_STARTED"]
    assert [s["name"] for s in started] == ["helper", "helper"]
    subs = {s["subagentRunId"] for s in started}
    assert len(subs) == 2
    assert sorted(s["description"] for s in started) == ["alpha", "beta"]
    assert {e["subagentRunId"] for e in events if e["type"] == "SUBAGENT_FINISHED"} == subs
    assert {e["subagentRunId"] for e in events if e["type"] == "STEP_STARTED"} == subs
    assert {e["subagentRunId"] for e in events if e["type"] == "STEP_FINISHED"} == subs
    # The delegating tool calls, their sub-agents tied to them, and their results.
    calls = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert [c["toolCallName"] for c in calls] == ["delegate", "delegate"]
    assert {s["parentToolCallId"] for s in started} == {c["toolCallId"] for c in calls}
    results = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert {r["toolCallId"] for r in results} == {c["toolCallId"] for c in calls}
    # The sub-agents' replies are theirs (attributed), the run's last reply is the parent's.
    sub_text = [e for e in events if e["type"] == "TEXT_MESSAGE_CONTENT" and "subagentRunId" in e]
    assert {e["subagentRunId"] for e in sub_text} == subs
    last = [m for m in out["messages"] if m["role"] == "assistant" and not m.get("subagentRunId")]
    assert last[-1]["content"].startswith("Done:")

    # Joined again from the start (GET), the same events, each frame's id its seq.
    with (
        db_server.client(timeout=30) as c,
        c.stream("GET", f"/api/agui/threads/{thread}/runs/{run}") as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        joined, ended = read_until_end(r)
    assert ended
    assert [e for _, e in joined] == events
    seqs = [int(i) for i, _ in joined if "." not in i]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_run_joined_again_after_drops_replays_exactly(
    db_server: Server, fake_llm: RunningFakeLLM
) -> None:
    control(fake_llm, tokens_per_s=100)
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    body = run_input(thread, run, "delegate: gamma | delta")
    rng = random.Random(28)
    got: list[tuple[str, Any]] = []
    connects = 0
    with db_server.client(timeout=30) as c:
        ended = False
        while not ended:
            connects += 1
            assert connects < 500, f"{len(got)} frames after {connects} connects"
            headers = {"Last-Event-ID": got[-1][0]} if got else {}
            # Half the rejoins repeat the run's request (same runId), half GET it.
            if rng.random() < 0.5:
                req = c.stream("POST", "/api/agui", json=body, headers=headers)
            else:
                req = c.stream("GET", f"/api/agui/threads/{thread}/runs/{run}", headers=headers)
            with req as r:
                assert r.status_code == 200, r.read()
                part, ended = read_until_end(r, stop_after=rng.randint(1, 6))
            got += part  # leaving the block drops the connection mid-stream
        with c.stream("GET", f"/api/agui/threads/{thread}/runs/{run}") as r:
            whole, _ = read_until_end(r)
        # Joined after its end: nothing more.
        with c.stream(
            "GET", f"/api/agui/threads/{thread}/runs/{run}", headers={"Last-Event-ID": got[-1][0]}
        ) as r:
            after, _ = read_until_end(r)
    assert connects > 5
    assert got == whole  # nothing lost, nothing twice, same order, same ids
    assert after == []
    # One run only: the repeated requests joined it.
    with db_server.client() as c:
        sessions = c.get("/api/sessions").json()["sessions"]
    assert sum(s["title"] == "delegate: gamma | delta" for s in sessions) == 1
    # And the stitched-together stream is a valid AG-UI run to the client.
    assert node("verify", stdin=json.dumps([e for _, e in got]))["count"] == len(got)


def test_owner_only_and_bad_input_is_a_problem(server: Server) -> None:
    add_user(server, "ana", "ana-password-123")
    add_user(server, "bo", "bo-password-1234")
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    with closing(user_client(server, "ana", "ana-password-123", timeout=30)) as ana:
        with ana.stream("POST", "/api/agui", json=run_input(thread, run, "hello")) as r:
            assert r.status_code == 200
            frames, ended = read_until_end(r)
        assert ended and frames[-1][1]["type"] == "RUN_FINISHED"
        sid = frames[0][1]["metadata"]["tether"]["sessionId"]
        # The thread is a session of hers; its turn is in her conversation.
        assert ana.get(f"/api/sessions/{sid}").status_code == 200
    with closing(user_client(server, "bo", "bo-password-1234")) as bo:
        # Her thread, by its id or its session's, is not his: 404, and no run starts.
        assert bo.get(f"/api/agui/threads/{thread}/runs/{run}").status_code == 404
        assert bo.get(f"/api/agui/threads/{sid}/runs/{run}").status_code == 404
        r = bo.post("/api/agui", json=run_input(sid, str(uuid.uuid4()), "mine now"))
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        bad: list[tuple[Any, int]] = [
            ({**run_input(thread, run, "x"), "messages": []}, 422),
            (
                {
                    **run_input(thread, run, "x"),
                    "messages": [{"id": "a", "role": "assistant", "content": "hi"}],
                },
                422,
            ),
            ({**run_input(thread, run, "x"), "runId": "r" * 201}, 422),
            ({**run_input(thread, run, "x"), "threadId": 5}, 422),
            (
                {
                    **run_input(thread, run, "x"),
                    "resume": [{"interruptId": "t_1/ap_1", "status": "resolved"}],
                },
                404,
            ),
            ({**run_input(thread, run, "x"), "forwardedProps": {"interrupts": 1}}, 422),
            ({**run_input(thread, run, "x"), "forwardedProps": {"agent": "ghost"}}, 422),
        ]
        for body, status in bad:
            r = bo.post("/api/agui", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"] == PROBLEM
        r = bo.post("/api/agui", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
        r = bo.post("/api/agui", json=run_input(thread, run, "x"), headers={"Last-Event-ID": "x1"})
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
        # The same runId with another message is refused, not a second run.
    with closing(user_client(server, "ana", "ana-password-123")) as ana:
        r = ana.post("/api/agui", json=run_input(thread, run, "something else"))
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
        # A frame id beyond the thread's log is a 410, not a stream that never says anything.
        r = ana.get(f"/api/agui/threads/{thread}/runs/{run}", headers={"Last-Event-ID": "9999"})
        assert r.status_code == 410 and r.headers["content-type"] == PROBLEM
    with httpx.Client(base_url=server.url) as anon:
        assert anon.post("/api/agui", json=run_input(thread, run, "x")).status_code == 401


def _ev(seq: int, task: str, type_: str, data: Any) -> Event:
    parent = task.rsplit(".", 1)[0] if "." in task else None
    return Event(seq, "s_1", task, parent, type_, json.dumps(data), 0.0)


def test_frames_of_one_seq_resume_from_the_frame_seen() -> None:
    """A reply cut off by a restart is superseded: its open message is ended first (two
    frames from one log event, ids `N.0` and `N`), and a cursor on the first resumes at the
    second."""
    log = [
        _ev(1, "t_a", "task.created", {"agent": "assistant", "input": {"text": "hi"}}),
        _ev(2, "t_a", "TEXT_MESSAGE_START", {"messageId": "m1", "role": "assistant"}),
        _ev(3, "t_a", "TEXT_MESSAGE_CONTENT", {"messageId": "m1", "delta": "par"}),
        _ev(4, "t_a", "message.superseded", {"messageIds": ["m1"], "toolCallIds": []}),
        _ev(5, "t_a", "RUN_FINISHED", {"threadId": "s_1", "runId": "t_a"}),
    ]

    def frames(cursor: Cursor | None) -> list[tuple[str, str]]:
        run = RunMap("th", "r", "t_a")
        out = []
        for e in log:
            fs = run.frames(e)
            out += [
                (frame_id(e.seq, i, len(fs)), f["type"])
                for i, f in enumerate(fs)
                if cursor is None or cursor.wants(e.seq, i)
            ]
        return out

    whole = frames(None)
    assert whole == [
        ("1", "RUN_STARTED"),
        ("2", "TEXT_MESSAGE_START"),
        ("3", "TEXT_MESSAGE_CONTENT"),
        ("4.0", "TEXT_MESSAGE_END"),
        ("4", "CUSTOM"),
        ("5", "RUN_FINISHED"),
    ]
    for k, (fid, _) in enumerate(whole):
        assert frames(parse_cursor(fid, "Last-Event-ID")) == whole[k + 1 :], fid


def test_an_approval_is_a_custom_event_and_the_same_run_goes_on(
    server: Server, fake_llm: RunningFakeLLM
) -> None:
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    got: list[tuple[str, Any]] = []
    with (
        server.client(timeout=30) as c,
        c.stream("POST", "/api/agui", json=run_input(thread, run, "write notes.txt: hi")) as r,
    ):
        frames = sse_frames(r)
        for f in frames:
            got.append((str(f.id), f.data))
            if f.data["type"] == "CUSTOM" and f.data["name"] == "tether.approval.requested":
                break
        asked = got[-1][1]["value"]
        assert asked["tool"] == "write_file" and asked["args"]["path"] == "notes.txt"
        answer = c.post(
            f"/api/tasks/{asked['taskId']}/approvals/{asked['approvalId']}",
            json={"decision": "approve"},
        )
        assert answer.status_code == 200, answer.text
        for f in frames:  # the same stream goes on
            got.append((str(f.id), f.data))
            if f.data["type"] in ("RUN_FINISHED", "RUN_ERROR"):
                break
    types = [e["type"] for _, e in got]
    assert types[-1] == "RUN_FINISHED"
    names = [e.get("name") for _, e in got if e["type"] == "CUSTOM"]
    assert names.index("tether.approval.requested") < names.index("tether.approval.answered")
    assert node("verify", stdin=json.dumps([e for _, e in got]))["count"] == len(got)


def test_the_docs_first_command(make_server: Any) -> None:
    """docs/agui.md's curl, against a server with no agents file (the demo agent answers),
    then its join after a frame id."""
    doc = (ROOT / "docs" / "agui.md").read_text()
    body = json.loads(doc.split("-d '", 1)[1].split("'", 1)[0])
    server = make_server()
    with server.client(timeout=30) as c:
        with c.stream("POST", "/api/agui", json=body) as r:
            assert r.status_code == 200, r.read()
            whole = []
            for f in sse_frames(r):
                whole.append((str(f.id), f.data))
                if f.data["type"] == "CUSTOM" and f.data["name"] == "tether.approval.requested":
                    v = f.data["value"]  # the demo asks to write a file, as the docs say
                    url = f"/api/tasks/{v['taskId']}/approvals/{v['approvalId']}"
                    assert c.post(url, json={"decision": "approve"}).status_code == 200
                if f.data["type"] in ("RUN_FINISHED", "RUN_ERROR"):
                    break
        assert whole[-1][1]["type"] == "RUN_FINISHED"
        assert {e["type"] for _, e in whole} >= {"SUBAGENT_STARTED", "STEP_STARTED"}
        k = len(whole) // 2
        path = f"/api/agui/threads/{body['threadId']}/runs/{body['runId']}"
        with c.stream("GET", path, headers={"Last-Event-ID": whole[k][0]}) as r:
            rest, _ = read_until_end(r)
    assert rest == whole[k + 1 :]
    assert node("verify", stdin=json.dumps([e for _, e in whole]))["count"] == len(whole)


def test_a_run_joined_again_across_a_kill_9_replays_exactly(
    db_server: Server, fake_llm: RunningFakeLLM
) -> None:
    """The server is killed mid-reply: the run goes on after the restart (the cut reply is
    superseded: its message is ended, then `tether.message.superseded`, from one seq), and
    the client that joins again from its last frame id gets exactly the rest."""
    control(fake_llm, tokens_per_s=30)
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    got: list[tuple[str, Any]] = []
    with (
        db_server.client(timeout=30) as c,
        c.stream("POST", "/api/agui", json=run_input(thread, run, "words 80")) as r,
    ):
        for f in sse_frames(r):
            got.append((str(f.id), f.data))
            if sum(e["type"] == "TEXT_MESSAGE_CONTENT" for _, e in got) >= 5:
                break
    db_server.kill()
    db_server.start()
    path = f"/api/agui/threads/{thread}/runs/{run}"
    with db_server.client(timeout=60) as c:
        with c.stream("GET", path, headers={"Last-Event-ID": got[-1][0]}) as r:
            rest, ended = read_until_end(r)
        assert ended
        with c.stream("GET", path) as r:
            whole, _ = read_until_end(r)
    assert got + rest == whole
    assert whole[-1][1]["type"] == "RUN_FINISHED"
    sup = next(
        k
        for k, (_, e) in enumerate(whole)
        if e["type"] == "CUSTOM" and e["name"] == "tether.message.superseded"
    )
    cut = whole[sup][1]["value"]["messageIds"]
    assert whole[sup - 1][1] == {"type": "TEXT_MESSAGE_END", "messageId": cut[0]}
    assert whole[sup - 1][0] == whole[sup][0] + ".0"
    assert node("verify", stdin=json.dumps([e for _, e in whole]))["count"] == len(whole)


def test_a_turn_started_over_tethers_api_can_be_joined(server: Server) -> None:
    with server.client(timeout=30) as c:
        sid = c.post("/api/sessions", json={"title": "rest"}).json()["id"]
        turn = c.post(f"/api/sessions/{sid}/messages", json={"text": "words 3"}).json()
        with c.stream("GET", f"/api/agui/threads/{sid}/runs/{turn['id']}") as r:
            frames, ended = read_until_end(r)
    assert ended and frames[-1][1]["type"] == "RUN_FINISHED"
    assert (frames[0][1]["threadId"], frames[0][1]["runId"]) == (sid, turn["id"])
    assert node("verify", stdin=json.dumps([e for _, e in frames]))["count"] == len(frames)


def test_with_interrupts_an_approval_ends_the_run_and_a_resume_continues_it(
    server: Server, fake_llm: RunningFakeLLM
) -> None:
    """`forwardedProps.interrupts`: the HttpAgent's own interrupt handling, from node."""
    thread, run1, run2 = (str(uuid.uuid4()) for _ in range(3))
    text = "write notes.txt: hi there"
    out = node("hitl", server.url + "/api/agui", SECRET, thread, run1, run2, text)
    events = out["events"]
    ends = [k for k, e in enumerate(events) if e["type"] == "RUN_FINISHED"]
    assert len(ends) == 2 and ends[1] == len(events) - 1
    first, second = events[: ends[0] + 1], events[ends[0] + 1 :]
    (interrupt,) = first[-1]["outcome"]["interrupts"]
    assert out["interrupts"] == [interrupt]
    assert interrupt["reason"] == "tool_approval" and interrupt["toolCallId"]
    assert second[0]["type"] == "RUN_STARTED" and second[0]["runId"] == run2
    assert "outcome" not in second[-1]
    answered = [e for e in second if e["type"] == "CUSTOM" and e["name"].endswith("answered")]
    assert answered[0]["value"]["decision"] == "approve"
    assert [e["toolCallId"] for e in second if e["type"] == "TOOL_CALL_RESULT"] == [
        interrupt["toolCallId"]
    ]
    sid = first[0]["metadata"]["tether"]["sessionId"]
    with server.client(timeout=30) as c:
        assert c.get(f"/api/sessions/{sid}/files/notes.txt").text == "hi there"
        # Each run joins again exactly: the first with GET, the one that resumed with the
        # same request (its answer stands; it is not given twice).
        path = f"/api/agui/threads/{thread}/runs/{run1}?interrupts=true"
        with c.stream("GET", path) as r:
            again, _ = read_until_end(r)
        assert [e for _, e in again] == first
        body = {
            **run_input(thread, run2, text),
            "forwardedProps": {"interrupts": True},
            "resume": [
                {"interruptId": interrupt["id"], "status": "resolved", "payload": {"approve": True}}
            ],
        }
        with c.stream("POST", "/api/agui", json=body) as r:
            whole, _ = read_until_end(r)
        assert [e for _, e in whole] == second
        k = len(whole) // 2
        with c.stream("POST", "/api/agui", json=body, headers={"Last-Event-ID": whole[k][0]}) as r:
            rest, _ = read_until_end(r)
        assert rest == whole[k + 1 :]


def test_a_cancelled_interrupt_denies_the_tool_call(server: Server) -> None:
    thread, run1, run2 = (str(uuid.uuid4()) for _ in range(3))
    text = "write denied.txt: no"
    first_body = {**run_input(thread, run1, text), "forwardedProps": {"interrupts": True}}
    with server.client(timeout=30) as c:
        with c.stream("POST", "/api/agui", json=first_body) as r:
            first, _ = read_until_end(r)
        (interrupt,) = first[-1][1]["outcome"]["interrupts"]
        body = {
            **run_input(thread, run2, text),
            "forwardedProps": {"interrupts": True},
            "resume": [{"interruptId": interrupt["id"], "status": "cancelled"}],
        }
        with c.stream("POST", "/api/agui", json=body) as r:
            second, ended = read_until_end(r)
        sid = first[0][1]["metadata"]["tether"]["sessionId"]
        assert c.get(f"/api/sessions/{sid}/files/denied.txt").status_code == 404
    assert ended and second[-1][1]["type"] == "RUN_FINISHED"
    answered = [e for _, e in second if e["type"] == "CUSTOM" and e["name"].endswith("answered")]
    assert answered[0]["value"]["decision"] == "deny"
    (result,) = [e for _, e in second if e["type"] == "TOOL_CALL_RESULT"]
    assert "denied" in result["content"]
