"""Per-user limits (issue 26, item 6), each against a real server with the limit shrunk:
past it a user gets a problem+json that names the setting, other users are unaffected, and
what frees the quota (a closed stream, a deleted session, a finished turn) frees it."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_server, model_session, say, workspace_file
from tests.helpers.server import ROOT, Api, Server, add_user, sse_frames, user_client, wait_until


def problem(r: httpx.Response, status: int, limit: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = dict(r.json())
    assert body["limit"] == limit and limit in body["detail"], body
    return body


def done(api: Api, task_id: str) -> dict[str, Any]:
    return api.wait_status(task_id, "completed", "failed", "cancelled", "interrupted")


def steps(server: Server) -> list[tuple[str, int]]:
    with sqlite3.connect(server.data_dir / "tether.db") as db:
        return db.execute("SELECT name, length(output) FROM tether_steps").fetchall()


def asked(fake: RunningFakeLLM) -> str:
    """Everything the model was sent, as one string."""
    return json.dumps([r["body"] for r in fake.fake.brain.requests])


def test_sessions_per_user_are_limited_and_a_deleted_one_frees_its_place(
    make_server: Any,
) -> None:
    server = make_server(TETHER_MAX_SESSIONS_PER_USER="3")
    api = Api(server.client())
    made = [api.session() for _ in range(3)]
    body = problem(api.c.post("/api/sessions", json={}), 429, "max_sessions_per_user")
    assert "3 sessions" in body["detail"]
    add_user(server, "bob", "bob-password-123")
    bob = user_client(server, "bob", "bob-password-123")
    assert bob.post("/api/sessions", json={}).status_code == 201  # not the owner's quota
    assert api.c.delete(f"/api/sessions/{made[0]}").status_code == 204
    assert api.c.post("/api/sessions", json={}).status_code == 201
    # Found by an attacker: 40 creates sent at once each saw room for one more (40 × 201
    # against a limit of 5). Counted and made one at a time per user, they stop at it.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: bob.post("/api/sessions", json={}).status_code, range(20)))
    assert codes.count(201) == 2 and codes.count(429) == 18, codes


def test_unfinished_turns_per_session_are_limited(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path, TETHER_MAX_QUEUED_TURNS="2")
    first = say(api, sid, "write a.txt: hello")  # waits for its approval
    say(api, sid, "and then?")  # waits for the first
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": "and then?"})
    body = problem(r, 429, "max_queued_turns")
    assert r.headers["retry-after"] and "2 messages" in body["detail"]
    # Another session of the same user is not this one.
    assert say(api, api.session(), "hi")["status"] in ("queued", "running")
    for turn in (first["id"],):
        api.c.post(f"/api/tasks/{turn}/cancel").raise_for_status()
    wait_until(
        lambda: (
            api.c.post(f"/api/sessions/{sid}/messages", json={"text": "now?"}).status_code == 201
        ),
        what="a place in the queue",
    )


class Stream:
    """An open stream of a session, its frames read as they are wanted."""

    def __init__(self, server: Server, sid: str, client: httpx.Client | None = None) -> None:
        self._cm = (client or server.client(timeout=30)).stream(
            "GET", f"/api/sessions/{sid}/stream"
        )
        self.r = self._cm.__enter__()
        self.frames = sse_frames(self.r) if self.r.status_code == 200 else iter(())

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def test_streams_per_user_are_limited_and_a_closed_one_frees_its_slot(make_server: Any) -> None:
    server = make_server(TETHER_MAX_STREAMS_PER_USER="2")
    api = Api(server.client())
    a, b, c = api.session(), api.session(), api.session()
    held = [Stream(server, a), Stream(server, b)]
    for s in held:
        assert next(s.frames).event == "snapshot"
    with api.c.stream("GET", f"/api/sessions/{c}/stream") as r:
        assert r.status_code == 429  # before reading: a stream's body never ends
        r.read()
    body = problem(r, 429, "max_streams_per_user")
    assert int(r.headers["retry-after"]) > 0 and "2 streams" in body["detail"]
    # Another user streams as usual.
    add_user(server, "bob", "bob-password-123")
    bob = user_client(server, "bob", "bob-password-123", timeout=30)
    theirs = Stream(server, Api(bob).session(), bob)
    assert theirs.r.status_code == 200
    theirs.close()
    # A stream that is closed gives its slot back.
    held.pop(0).close()

    def fresh() -> Stream | None:
        s = Stream(server, c)
        if s.r.status_code == 200:
            return s
        s.close()
        return None

    held.append(wait_until(fresh, timeout=20, interval=0.1, what="the closed stream's slot"))
    assert next(held[-1].frames).event == "snapshot"
    # At the limit, the same sign-in's new stream on the same session replaces its oldest
    # there (a reloaded page is not locked out by the stream it left behind).
    new = Stream(server, c)
    assert new.r.status_code == 200
    old = held.pop()
    assert [f.event for f in old.frames][-1] == "auth"  # ended by the server
    for s in [*held, new, old]:
        s.close()


def test_a_reply_starts_at_most_max_delegations_sub_agents(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, TETHER_MAX_DELEGATIONS_PER_REPLY="2"
    )
    turn = say(api, sid, "delegate: a | b | c | d | e")
    assert done(api, turn["id"])["status"] == "completed"
    assert len(api.task(turn["id"])["children"]) == 2
    assert asked(fake_llm).count("max_delegations_per_reply") == 3  # told for c, d and e


def test_a_saved_reply_is_bounded_and_a_call_that_does_not_fit_is_refused(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, approval=[], TETHER_MAX_SAVED_RESPONSE_BYTES="8192"
    )
    turn = say(api, sid, "write big.txt: " + "y" * 60_000)
    assert done(api, turn["id"])["status"] == "completed"
    saved = [size for name, size in steps(server) if name == "model"]
    assert saved and max(saved) < 16_000  # base64 of a pickle of at most ~8 KiB
    assert "max_saved_response_bytes" in asked(fake_llm)  # the model is told why
    assert workspace_file(api, sid, "big.txt") is None


def test_an_mcp_result_is_cut_to_the_tool_result_limit(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    script = ROOT / "tests" / "helpers" / "mcp_big.py"
    entry = f'{{ command = "{sys.executable}", args = ["{script}"] }}'
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        approval=[],
        extra=f"mcp = [{entry}]",
        TETHER_MAX_TOOL_RESULT_CHARS="2048",
    )
    turn = say(api, sid, "mcp big n=60000")
    assert done(api, turn["id"])["status"] == "completed"
    stored = dict(steps(server))["tool.big"]
    assert stored < 5000
    last = json.dumps(fake_llm.fake.brain.requests[-1]["body"])
    assert "characters of this result cut" in last and "x" * 3000 not in last


def test_past_the_storage_quota_nothing_new_starts_a_turn_stops_and_delete_frees_it(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path, database_env: dict[str, str]
) -> None:
    server = model_server(
        make_server,
        fake_llm,
        tmp_path,
        TETHER_MAX_STORAGE_BYTES_PER_USER="300000",
        **database_env,
    )
    api = Api(server.client())
    chat = api.session()
    waiting = say(api, chat, "write a.txt: hello")  # asks for approval, then goes on
    req = wait_until(
        lambda: next((e for e in api.all_events(chat) if e["type"] == "approval.requested"), None),
        what="the approval request",
    )
    full = api.session()
    filler = api.start(full, "big_events", {"count": 4, "size": 100_000})
    assert done(api, filler["id"])["status"] == "completed"

    r = api.c.post(f"/api/sessions/{full}/tasks", json={"agent": "big_events", "input": {}})
    body = problem(r, 507, "max_storage_bytes_per_user")
    assert body["used"] >= 400_000 and "delete sessions" in body["detail"]
    problem(
        api.c.post(f"/api/sessions/{chat}/messages", json={"text": "more"}),
        507,
        "max_storage_bytes_per_user",
    )
    # The running turn stops cleanly before its next model call, saying why.
    url = f"/api/tasks/{waiting['id']}/approvals/{req['data']['approvalId']}"
    assert api.c.post(url, json={"decision": "approve"}).status_code == 200
    stopped = done(api, waiting["id"])
    assert stopped["status"] == "failed"
    assert "storage quota" in stopped["error"]["message"]
    assert workspace_file(api, chat, "a.txt") is None  # the approved write was refused too
    # Another user is not this one's quota.
    add_user(server, "bob", "bob-password-123", server.env)
    bob = user_client(server, "bob", "bob-password-123")
    other = Api(bob).session()
    small = {"agent": "big_events", "input": {"count": 1, "size": 10}}
    assert bob.post(f"/api/sessions/{other}/tasks", json=small).status_code == 201
    # Deleting the full session frees its share at once.
    assert api.c.delete(f"/api/sessions/{full}").status_code == 204
    again = api.c.post(f"/api/sessions/{chat}/tasks", json={"agent": "big_events", "input": {}})
    assert again.status_code == 201, again.text


async def test_the_log_writer_counts_each_sessions_bytes(make_log: Any) -> None:
    from tether.db.schema import sessions
    from tether.events.log import ROW_BYTES, Append

    log = await make_log()

    def add(c: sa.Connection) -> None:
        for sid in ("s_a", "s_b"):
            c.execute(sa.insert(sessions).values(id=sid, owner="u", title="", created_at=0.0))

    await log.db.write(add)
    datas = ['{"x":"' + "a" * n + '"}' for n in (10, 1000, 50_000)]
    await log.append(*(Append("s_a", None, None, "note", d) for d in datas))
    await log.append(Append("s_b", None, None, "note", "{}"))

    def used(c: sa.Connection) -> dict[str, int]:
        return dict(c.execute(sa.select(sessions.c.id, sessions.c.used_bytes)).all())

    got = await log.db.read(used)
    assert got == {"s_a": sum(len(d) + ROW_BYTES for d in datas), "s_b": 2 + ROW_BYTES}


def test_on_a_full_disk_deleting_a_session_works_and_frees_room(
    make_server: Any, tmp_path: Path
) -> None:
    from tests.test_failures import fill, small_disk

    with small_disk(tmp_path / "disk", 64) as disk:
        server = make_server(data_dir=disk)
        try:
            api = Api(server.client())
            big = api.session()
            task = api.start(big, "big_events", {"count": 4000, "size": 2000})["id"]
            assert done(api, task)["status"] == "completed"
            fill(disk)
            refused = wait_until(
                lambda: (
                    (r := api.c.post("/api/sessions", json={"title": "x" * 200})).status_code != 201
                    and r
                ),
                timeout=60,
                interval=0.01,
                what="a write to be refused",
            )
            assert refused.status_code == 503, refused.text
            r = api.c.delete(f"/api/sessions/{big}")
            assert r.status_code == 204, r.text
            # The room it held is the database's again: new work is written, the disk still full.
            assert api.c.post("/api/sessions", json={}).status_code == 201
            sid = api.session()
            small = api.start(sid, "big_events", {"count": 5, "size": 100_000})["id"]
            assert done(api, small)["status"] == "completed"
        finally:
            server.stop()


def test_a_batch_past_the_storage_quota_starts_no_more_sub_agents(
    make_server: Any, database_env: dict[str, str]
) -> None:
    """Found by an attacker: a batch admitted at the door (its owner under quota) went on
    writing its sub-agents' inputs, events and results: 71.5 MB against a 300 KB quota.
    A new sub-agent is not started past the quota; the batch fails saying why."""
    server = make_server(TETHER_MAX_STORAGE_BYTES_PER_USER="300000", **database_env)
    api = Api(server.client())
    sid = api.session()
    items = ["x" * 20_000] * 40  # 800 KB asked for; each item stores its input again
    task = api.start(sid, "batch", {"items": items, "delay_s": 0.05})
    ended = done(api, task["id"])
    assert ended["status"] == "failed", ended
    assert "was not started" in ended["error"]["message"]
    assert "max_storage_bytes_per_user" in ended["error"]["message"]
    started = len(api.task(task["id"])["children"])
    assert started < 30, started
    # A retry of an accepted request gets its task, quota or not; a new one gets 507.
    key = {"Idempotency-Key": "again-1"}
    small = {"agent": "batch", "input": {"items": [1], "delay_s": 0}}
    other = api.session()
    problem(
        api.c.post(f"/api/sessions/{other}/tasks", json=small), 507, "max_storage_bytes_per_user"
    )
    assert api.c.delete(f"/api/sessions/{sid}").status_code == 204
    first = api.c.post(f"/api/sessions/{other}/tasks", json=small, headers=key)
    assert first.status_code == 201
    filler = api.start(other, "big_events", {"count": 4, "size": 100_000})
    done(api, filler["id"])
    again = api.c.post(f"/api/sessions/{other}/tasks", json=small, headers=key)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
