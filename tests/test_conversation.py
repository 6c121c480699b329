"""The conversation as a tree of turns, against a real server and the local model server:
edits, regenerations and retries make branches; the branch shown is per session, from the
log; each turn sends its model only its branch, stopped and failed turns included as what
they showed, fitted to the context window; storage grows with the conversation. Also what a
first run offers: the offline demo, or a default assistant on a local model."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import (
    control,
    messages_by_id,
    model_session,
    say,
    waited_for,
    workspace_file,
)
from tests.helpers.server import SECRET, Api, Server, wait_until


def _done(api: Api, task_id: str, timeout: float = 60) -> dict[str, Any]:
    return api.wait_status(
        task_id, "completed", "failed", "cancelled", "interrupted", timeout=timeout
    )


def _file_rows(server: Server, sid: str) -> list[str]:
    with sqlite3.connect(server.data_dir / "tether.db") as c:
        q = "SELECT path FROM tether_files WHERE session_id = ?"
        return [p for (p,) in c.execute(q, (sid,))]


def _requests(fake: RunningFakeLLM) -> list[dict[str, Any]]:
    import httpx

    return list(httpx.get(f"{fake.url}/_requests").json())


def _texts(request: dict[str, Any]) -> str:
    """Everything a provider request carried as text (either wire format), joined."""
    out: list[str] = []
    for m in request["body"]["messages"]:
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            for b in c:
                out.append(str(b.get("text") or b.get("content") or ""))
    return "\n".join(out)


def _request_for(fake: RunningFakeLLM, marker: str) -> dict[str, Any]:
    """The newest request whose last user message contains `marker`."""
    return next(r for r in reversed(_requests(fake)) if marker in _texts(r).split("\n")[-1])


def _shown_path(events: list[dict[str, Any]]) -> list[str]:
    """The branch a reader of the log shows, by the rule the page uses (see chat.js)."""
    follows: dict[str, str | None] = {}
    rank: dict[str, int] = {}
    order: list[str] = []

    def select(turn: str | None, seq: int) -> None:
        while turn is not None:
            rank[turn] = seq
            turn = follows.get(turn)

    for e in events:
        d = e["data"]
        if e["type"] == "task.created" and e["parent_task_id"] is None:
            inp = d["input"]
            if "parent" not in inp:
                continue
            follows[e["task_id"]] = inp["parent"]
            order.append(e["task_id"])
            select(e["task_id"], e["seq"])
        elif e["type"] == "conversation.selected":
            select(d["turn"], e["seq"])
    path: list[str] = []
    node: str | None = None
    while kids := [t for t in order if follows[t] == node]:
        node = max(kids, key=lambda t: (rank[t], order.index(t)))
        path.append(node)
    return path


def test_edits_regenerations_and_selection_make_one_tree_every_reader_sees(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path, database_env: dict[str, str]
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[], **database_env)
    # The first reply streams for about a second, so the second message is sent while it
    # runs however slow the machine is (unpaced, a loaded machine could finish it first).
    control(fake_llm, tokens_per_s=3)
    a = say(api, sid, "first words 3")
    b = say(api, sid, "second words 3")
    assert a["input"]["parent"] is None and b["input"]["parent"] == a["id"]
    _done(api, b["id"])
    control(fake_llm, tokens_per_s=0)
    assert waited_for(api, sid, b["id"]) == a["id"]  # it queued behind the running turn
    assert "first words 3" in _texts(_request_for(fake_llm, "second words 3"))

    # Edit the first message: a new first turn, which sees nothing of the other branch.
    c = say(api, sid, "edited words 3", parent=None)
    _done(api, c["id"])
    seen = _texts(_request_for(fake_llm, "edited words 3"))
    assert "first words 3" not in seen and "second" not in seen

    # Regenerate the second reply: same message, same parent, a sibling of b.
    r = api.c.post(f"/api/tasks/{b['id']}/regenerate")
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["input"] == {**d["input"], "text": "second words 3", "parent": a["id"]}
    assert d["input"]["regenerates"] == b["id"]
    _done(api, d["id"])
    seen = _texts(_request_for(fake_llm, "second words 3"))
    assert "first words 3" in seen and "edited" not in seen

    # The branch shown is d's; a message without a parent follows it.
    assert _shown_path(api.all_events(sid)) == [a["id"], d["id"]]
    e = say(api, sid, "third words 3")
    assert e["input"]["parent"] == d["id"]
    _done(api, e["id"])

    # Show the edited branch again (from any tab): the next message follows it.
    r = api.c.post(f"/api/tasks/{c['id']}/select")
    assert r.status_code == 200 and r.json()["turn"] == c["id"]
    assert _shown_path(api.all_events(sid)) == [c["id"]]
    f = say(api, sid, "fourth words 3")
    assert f["input"]["parent"] == c["id"]
    _done(api, f["id"])
    # Showing b (a middle turn) shows its branch down to what was shown below it last.
    api.c.post(f"/api/tasks/{b['id']}/select").raise_for_status()
    assert _shown_path(api.all_events(sid)) == [a["id"], b["id"]]
    api.c.post(f"/api/tasks/{d['id']}/select").raise_for_status()
    assert _shown_path(api.all_events(sid)) == [a["id"], d["id"], e["id"]]

    # The tree as the page reads it before any event: every branch, rank and text.
    conv = api.c.get(f"/api/sessions/{sid}/conversation").json()
    turns = {t["id"]: t for t in conv["turns"]}
    assert list(turns) == [a["id"], b["id"], c["id"], d["id"], e["id"], f["id"]]
    assert turns[d["id"]]["parent"] == a["id"] and turns[d["id"]]["regenerates"] == b["id"]
    assert turns[c["id"]]["parent"] is None and turns[c["id"]]["text"] == "edited words 3"
    assert turns[e["id"]]["reply"].startswith("Reply ")
    path, node = [], None
    while kids := [t for t in conv["turns"] if t["parent"] == node]:
        node = max(kids, key=lambda t: t["rank"])["id"]
        path.append(node)
    assert path == _shown_path(api.all_events(sid))

    # The same tree after a restart: the server's own tip agrees with the log's.
    server.kill()
    server.start()
    api = Api(server.client())
    g = say(api, sid, "fifth words 3")
    assert g["input"]["parent"] == e["id"]
    _done(api, g["id"])
    assert _shown_path(api.all_events(sid)) == [a["id"], d["id"], e["id"], g["id"]]

    # Refused, with nothing recorded: a parent that is not a turn of this session, another
    # user's turn, a task that is not a turn.
    before = len(api.all_events(sid))
    other = api.session("other")
    h = say(api, other, "elsewhere words 2")
    _done(api, h["id"])
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": "x", "parent": h["id"]})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert h["id"] not in r.json()["detail"]
    batch = api.start(sid, "batch", {"items": ["a"], "delay_s": 0})
    for path in (f"/api/tasks/{batch['id']}/regenerate", f"/api/tasks/{batch['id']}/select"):
        assert api.c.post(path).status_code == 409
    for path in ("/api/tasks/t_nope/regenerate", "/api/tasks/t_nope/select"):
        assert api.c.post(path).status_code == 404
    _done(api, batch["id"])
    assert [e for e in api.all_events(sid)[before:] if e["type"] == "conversation.selected"] == []


def test_a_stopped_or_failed_turn_is_part_of_what_the_next_turn_sends(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    control(fake_llm, tokens_per_s=15)
    a = say(api, sid, "slow words 200")
    wait_until(
        lambda: any(" w1" in t for t in messages_by_id(api.all_events(sid)).values()),
        what="part of the reply",
    )
    api.c.post(f"/api/tasks/{a['id']}/cancel").raise_for_status()
    _done(api, a["id"])
    control(fake_llm, tokens_per_s=0)
    b = say(api, sid, "next words 3")
    assert b["input"]["parent"] == a["id"]
    _done(api, b["id"])
    seen = _texts(_request_for(fake_llm, "next words 3"))
    assert "slow words 200" in seen
    assert "stopped by the user" in seen and "What had been shown" in seen
    assert "w0 w1" in seen  # the words that were shown

    control(fake_llm, faults=[{"status": 400}])
    c = say(api, sid, "doomed words 3")
    assert _done(api, c["id"])["status"] == "failed"
    d = say(api, sid, "after words 3")
    _done(api, d["id"])
    seen = _texts(_request_for(fake_llm, "after words 3"))
    assert "doomed words 3" in seen and "This reply failed" in seen
    assert "Nothing had been shown" in seen

    # Retry the failed turn: a sibling with the same message.
    r = api.c.post(f"/api/tasks/{c['id']}/regenerate")
    assert r.status_code == 201
    assert _done(api, r.json()["id"])["status"] == "completed"


def test_a_long_conversation_fits_the_context_window_and_stays_small(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """100 turns of ~100 KB each (a 50 KB message, a 50 KB reply): no request is larger than
    the agent's context window, the page is told where the cut is, and the database stays
    under 3x the size of the events (it grew with the square of the conversation before)."""
    context = 60_000
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        extra=f"context_tokens = {context}\nmax_tokens = 2000",
        TETHER_MAX_QUEUED_TURNS="100",  # all 100 messages are sent at once
    )
    # ~56 KB in 100 words (the model streams a word a delta: 100 deltas, not 8,000)
    filler = " ".join("-".join(f"x{i:05d}" for i in range(j, j + 80)) for j in range(0, 8000, 80))
    turns = [say(api, sid, f"echo: turn {n} {filler}") for n in range(100)]
    _done(api, turns[-1]["id"], timeout=600)
    tasks = {t["id"]: api.task(t["id"]) for t in turns}
    assert {t["status"] for t in tasks.values()} == {"completed"}

    for r in _requests(fake_llm)[-100:]:
        assert r["size"] / 3 <= context, "a request exceeded the context window"
    events = api.all_events(sid)
    trimmed = [e for e in events if e["type"] == "context.trimmed"]
    assert trimmed and trimmed[-1]["data"]["dropped"] > 90
    assert trimmed[-1]["data"]["first"] in tasks
    assert "left out" in _texts(_requests(fake_llm)[-1])

    db = server.data_dir / "tether.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (event_bytes,) = c.execute("SELECT sum(length(data)) FROM tether_events").fetchone()
        (step_bytes,) = c.execute("SELECT sum(length(output)) FROM tether_steps").fetchone()
    size = sum(p.stat().st_size for p in server.data_dir.glob("*.db*"))
    print(f"events {event_bytes:,} B, steps {step_bytes:,} B, database files {size:,} B")
    assert size < 3 * event_bytes
    assert step_bytes < event_bytes  # no step holds a copy of the conversation


def test_the_demo_shows_every_part_without_a_key(make_server: Any, tmp_path: Path) -> None:
    server = make_server(TETHER_DEMO_WORDS_PER_S="0")
    api = Api(server.client())
    agents = {a["name"]: a for a in api.c.get("/api/agents").json()["agents"]}
    demo = agents["demo"]
    assert demo["kind"] == "model" and demo["demo"] and demo["default"] and demo["ready"]
    assert agents["demo-helper"]["internal"] and not agents["demo"]["internal"]
    sid = api.session()
    turn = say(api, sid, "show me around")
    wait_until(
        lambda: any(e["type"] == "approval.requested" for e in api.all_events(sid)),
        what="the demo's approval request",
    )
    events = api.all_events(sid)
    calls = [e["data"]["toolCallName"] for e in events if e["type"] == "TOOL_CALL_START"]
    assert calls.count("delegate") == 2 and "list_files" in calls and "write_file" in calls
    helpers = [e for e in events if e["type"] == "task.created" and e["parent_task_id"]]
    assert len(helpers) == 2 and {e["data"]["agent"] for e in helpers} == {"demo-helper"}
    ask = next(e for e in events if e["type"] == "approval.requested")
    assert ask["data"]["replaces"] is False
    # One turn's events, its sub-agents' included, as a long conversation's page reads them.
    mine = api.c.get(f"/api/sessions/{sid}/events", params={"task": turn["id"]}).json()
    theirs = [e for e in events if (e["task_id"] or "").startswith(turn["id"])]
    assert mine["events"] == theirs and len({e["task_id"] for e in theirs}) == 3
    r = api.c.post(
        f"/api/tasks/{turn['id']}/approvals/{ask['data']['approvalId']}",
        json={"decision": "approve"},
    )
    assert r.status_code == 200
    done = _done(api, turn["id"])
    assert done["status"] == "completed"
    assert "| Part |" in done["result"]["text"] and "```python" in done["result"]["text"]
    assert workspace_file(api, sid, "notes.md") is not None

    # The second time it overwrites notes.md: the approval shows the change as a diff.
    turn = say(api, sid, "again, please")
    ask = wait_until(
        lambda: [e for e in api.all_events(sid) if e["type"] == "approval.requested"][1:],
        what="the second approval",
    )[0]
    assert ask["data"]["replaces"] is True
    assert "-- You said: show me around" in ask["data"]["diff"].replace("\n-", "\n--")
    assert "+- You said: again, please" in ask["data"]["diff"]


def test_a_local_model_url_gives_a_default_assistant(
    make_server: Any, fake_llm: RunningFakeLLM
) -> None:
    server: Server = make_server(TETHER_MODEL_URL=fake_llm.url + "/v1", TETHER_MODEL="local-llm")
    api = Api(server.client())
    agents = {a["name"]: a for a in api.c.get("/api/agents").json()["agents"]}
    assert "demo" not in agents
    assert agents["assistant"]["default"] and agents["assistant"]["ready"]
    assert agents["assistant"]["model"] == "openai:local-llm"
    assert agents["assistant"]["delegates"] == ["researcher"]
    sid = api.session()
    turn = say(api, sid, "please delegate: look it up to researcher")
    done = _done(api, turn["id"])
    assert done["status"] == "completed", done
    assert done["result"]["text"].startswith("Done:")
    assert SECRET not in str(_requests(fake_llm)[-1])


def test_what_a_caller_cannot_do_to_a_conversation(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """Found by trying as an attacker: no task of the caller's choosing waits on another's
    (internal agents are not started on their own; `after` is the server's); turns queue
    behind every unfinished one; odd input is refused, saying why."""
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=["write_file"])
    # The demo's sub-agent, or the batch's item, started on its own: refused.
    r = api.c.post(f"/api/sessions/{sid}/tasks", json={"agent": "item", "input": {"item": 1}})
    assert r.status_code == 422 and "sub-agent" in r.json()["detail"]

    # A turn waits for an approval; two more queue; the last one is cancelled; the next
    # message still queues behind the unfinished one before it, never beside the first.
    x = say(api, sid, "write a.txt: first")
    wait_until(
        lambda: any(e["type"] == "approval.requested" for e in api.all_events(sid)),
        what="the approval",
    )
    y = say(api, sid, "second words 2")
    z = say(api, sid, "third words 2")
    wait_until(
        lambda: (
            (waited_for(api, sid, y["id"]), waited_for(api, sid, z["id"])) == (x["id"], y["id"])
        ),
        what="the turns to queue, each behind the one before",
    )
    api.c.post(f"/api/tasks/{z['id']}/cancel").raise_for_status()
    api.wait_status(z["id"], "cancelled")
    w = say(api, sid, "fourth words 2")
    wait_until(lambda: waited_for(api, sid, w["id"]) == y["id"], what="w behind y")
    # A model agent's task given an `after` of the caller's (another's, or its own id):
    # not an input; it queues behind the turns before it, as any turn does.
    r = api.c.post(
        f"/api/sessions/{sid}/tasks",
        json={"agent": "assistant", "input": {"text": "hi", "after": "t_someone_elses"}},
    )
    assert r.status_code == 201 and "after" not in r.json()["input"]
    v = r.json()
    wait_until(lambda: waited_for(api, sid, v["id"]) == w["id"], what="v behind w")
    # Regenerate: not while it runs; not with an agent that does not exist.
    assert api.c.post(f"/api/tasks/{x['id']}/regenerate").status_code == 409
    api.c.post(f"/api/tasks/{x['id']}/cancel").raise_for_status()
    api.wait_status(x["id"], "cancelled")
    r = api.c.post(f"/api/tasks/{x['id']}/regenerate", json={"agent": "nope"})
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    # Text that is blank is not a message; one with a NUL is refused at the door (400).
    for bad, status in ((" \n ", 422), ("a\u0000b", 400)):
        r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": bad})
        assert r.status_code == status and r.headers["content-type"] == "application/problem+json"
    # One session's page asks only for its own tasks' events.
    other = api.session("other")
    r = api.c.get(f"/api/sessions/{other}/events", params={"task": x["id"]})
    assert r.status_code == 404
    for t in (y, w, v):
        api.c.post(f"/api/tasks/{t['id']}/cancel")


def test_a_session_is_named_by_its_first_message_and_leaves_no_files_behind(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, _ = model_session(make_server, fake_llm, tmp_path, approval=[])
    r = api.c.post("/api/sessions", json={"title": " \u200b "})
    assert r.status_code == 201 and r.json()["title"] == ""
    sid = r.json()["id"]
    turn = say(api, sid, "## Plan the\u202e trip\n\nwrite plan.txt: go north")
    assert api.c.get(f"/api/sessions/{sid}").json()["title"] == "Plan the trip"
    renamed = [e for e in api.all_events(sid) if e["type"] == "session.renamed"]
    assert [e["data"]["title"] for e in renamed] == ["Plan the trip"]
    _done(api, turn["id"])
    # A second message does not rename it; a blank or invisible rename is refused.
    _done(api, say(api, sid, "more words 2")["id"])
    assert api.c.get(f"/api/sessions/{sid}").json()["title"] == "Plan the trip"
    for bad in ("   ", "\u200b\ufeff"):
        assert api.c.patch(f"/api/sessions/{sid}", json={"title": bad}).status_code == 400
    assert workspace_file(api, sid, "plan.txt") == "go north"
    assert api.c.delete(f"/api/sessions/{sid}").status_code == 204
    assert api.c.get(f"/api/sessions/{sid}/files").status_code == 404
    assert not _file_rows(server, sid)  # the files went with it


def test_a_write_outside_the_workspace_is_refused_before_anyone_is_asked(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)  # write_file asks first
    turn = say(api, sid, "write ../../outside.txt: nope")
    done = _done(api, turn["id"])
    events = api.all_events(sid)
    assert not [e for e in events if e["type"] == "approval.requested"]
    assert done["status"] == "completed"
    assert "outside the workspace" in _texts(_requests(fake_llm)[-1])
    assert not (server.data_dir.parent / "outside.txt").exists()
