"""A session leaves as Markdown to read and JSON to keep; the JSON comes back as the same log.

Real server, real SQLite file, model agents on the local fake provider.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import KEYS, agents_toml, say
from tests.helpers.server import Api, Server, add_user, user_client
from tether.exports import markdown

PROBLEM = "application/problem+json"


def export(c: httpx.Client, sid: str, fmt: str) -> httpx.Response:
    r = c.get(f"/api/sessions/{sid}/export", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return r


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its ids named by their place (the session "S", the n-th task "Tn",
    a sub-task under its parent's name) and its moment of export left out: two exports of
    the same log, one of them imported, are then equal."""
    doc = copy.deepcopy(doc)
    names = {doc["session"]["id"]: "S"}
    for i, t in enumerate(doc["tasks"]):
        names[t["id"]] = f"T{i}"

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            head, sep, rest = v.partition(":")
            return names.get(v) or (names[head] + sep + rest if sep and head in names else v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    del doc["exported_at"], doc["session"]["created_at"]
    return dict(walk(doc))


@pytest.fixture(scope="module")
def chat(
    tmp_path_factory: pytest.TempPathFactory, fake_llm_server: RunningFakeLLM
) -> Iterator[tuple[Server, Api, str]]:
    """A finished conversation, shared by this module's tests: a plain reply, a delegation
    to two sub-agents, a file written by a tool."""
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "agents.toml").write_text(agents_toml(fake_llm_server, approval=[]))
    # An export may be larger than other bodies (its files ride in it): the import's limit.
    limits = {"TETHER_MAX_BODY_BYTES": "200000", "TETHER_MAX_IMPORT_BYTES": "700000"}
    server = Server(
        tmp / "data", env={"TETHER_AGENTS_FILE": str(tmp / "agents.toml"), **KEYS, **limits}
    )
    server.data_dir.mkdir()
    server.start()
    try:
        api = Api(server.client())
        sid = api.session("Trip: plans & notes")
        for text in ("hello there", "delegate: find trains | find hotels", "write notes.md: pack"):
            api.wait_status(say(api, sid, text)["id"], "completed")
        yield server, api, sid
    finally:
        server.stop()


def test_markdown_reads_as_the_conversation_with_sub_agents_nested(
    chat: tuple[Server, Api, str],
) -> None:
    server, api, sid = chat
    r = export(api.c, sid, "markdown")
    assert r.headers["content-type"].startswith("text/markdown")
    assert 'filename="tether-trip-plans-notes-' in r.headers["content-disposition"]
    md = r.text
    assert md.startswith("# Trip: plans & notes\n")
    # The messages in the chat's order, each followed by its reply.
    order = [md.index(s) for s in ("hello there", "Reply ", "find trains", "write notes.md")]
    assert order == sorted(order), md
    assert md.count("## You ·") == 3 and md.count("## assistant ·") == 3
    # The delegations: each sub-agent's task and its own reply, quoted under the turn.
    quoted = [line for line in md.splitlines() if line.startswith("> ")]
    assert any("Sub-agent helper" in q and "find trains" in q for q in quoted), md
    assert any("Sub-agent helper" in q and "find hotels" in q for q in quoted), md
    assert any(q.startswith("> Reply ") for q in quoted), md  # the helper's answer, nested
    # A tool call is one line: its name, its arguments and its result, cut short.
    tool = [line for line in md.splitlines() if line.startswith("- Tool `write_file`")]
    assert len(tool) == 1 and "path=notes.md" in tool[0] and " → " in tool[0], md


def test_json_export_imports_as_the_same_log_and_round_trips(
    chat: tuple[Server, Api, str],
) -> None:
    server, api, sid = chat
    first = export(api.c, sid, "json").json()
    assert first["format"] == "tether.session" and first["version"] == 1
    assert [e["seq"] for e in first["events"]] == list(range(1, len(first["events"]) + 1))
    assert {f["path"] for f in first["files"]} == {"notes.md"}

    r = api.c.post("/api/sessions/import", json=first)
    assert r.status_code == 201, r.text
    copy_id = r.json()["id"]
    assert copy_id != sid and r.json()["title"] == "Trip: plans & notes"
    again = export(api.c, copy_id, "json").json()
    assert canonical(again) == canonical(first)
    # New ids where ids must be unique, none shared with the original.
    old = {t["id"] for t in first["tasks"]}
    assert old.isdisjoint(t["id"] for t in again["tasks"])
    # The copy reads as the original does: its conversation, its files, its stream.
    conv = api.c.get(f"/api/sessions/{copy_id}/conversation").json()["turns"]
    assert [t["text"] for t in conv] == [
        "hello there",
        "delegate: find trains | find hotels",
        "write notes.md: pack",
    ]
    assert api.c.get(f"/api/sessions/{copy_id}/files/notes.md").text == "pack"
    assert (
        export(api.c, copy_id, "markdown").text.split("\n", 3)[3]
        == export(api.c, sid, "markdown").text.split("\n", 3)[3]
    )
    with api.c.stream("GET", f"/api/sessions/{copy_id}/stream") as s:
        head = next(s.iter_lines())
        assert head.startswith("retry:")
    listed = api.c.get("/api/sessions").json()["sessions"]
    assert copy_id in [s["id"] for s in listed]
    # Search finds the copy as it finds the original, from the import's own commit.
    found = api.c.get("/api/search", params={"q": "hotels"}).json()["results"]
    assert {r["session_id"] for r in found} == {sid, copy_id}
    titled = api.c.get("/api/search", params={"q": "Trip plans"}).json()["results"]
    assert copy_id in {r["session_id"] for r in titled}


def test_an_export_larger_than_other_bodies_imports(chat: tuple[Server, Api, str]) -> None:
    # 300 KB of files: past max_body_bytes (200 KB here), within max_import_bytes (700 KB).
    server, api, sid = chat
    doc = export(api.c, sid, "json").json()
    big = base64.b64encode(os.urandom(300_000)).decode()
    doc["files"] = [*doc["files"], {**doc["files"][0], "path": "big.bin", "data_base64": big}]
    r = api.c.post("/api/sessions/import", json=doc)
    assert r.status_code == 201, r.text
    copy = r.json()["id"]
    files = api.c.get(f"/api/sessions/{copy}/files").json()["files"]
    assert {"path": "big.bin", "size": 300_000} in files
    # Any other route still holds to max_body_bytes.
    r = api.c.post("/api/sessions", json={"title": "x" * 250_000})
    assert r.status_code == 413


def test_bad_or_hostile_imports_are_refused_whole(
    chat: tuple[Server, Api, str],
) -> None:
    server, api, sid = chat
    doc = export(api.c, sid, "json").json()
    before = {s["id"] for s in api.c.get("/api/sessions").json()["sessions"]}

    def broken(change: Any) -> dict[str, Any]:
        d = copy.deepcopy(doc)
        change(d)
        return d

    child = next(t for t in doc["tasks"] if t["parent_id"] is not None)
    cases = {
        "version": broken(lambda d: d.update(version=2)),
        "format": broken(lambda d: d.update(format="other")),
        "seq gap": broken(lambda d: d["events"].pop(3)),
        "seq order": broken(lambda d: d["events"].reverse()),
        "missing parent": broken(
            lambda d: [
                t.update(parent_id="t_nowhere") for t in d["tasks"] if t["id"] == child["id"]
            ]
        ),
        "event of no task": broken(lambda d: d["events"][-1].update(task_id="t_other_users")),
        "cycle": broken(
            lambda d: [
                t.update(parent_id=child["id"]) for t in d["tasks"] if t["id"] == child["parent_id"]
            ]
        ),
        "bad status": broken(lambda d: d["tasks"][0].update(status="done")),
        "path escape": broken(lambda d: d["files"][0].update(path="../../etc/passwd")),
        "not base64": broken(lambda d: d["files"][0].update(data_base64="***")),
        "long type": broken(lambda d: d["events"][0].update(type="x" * 500)),
    }
    for name, bad in cases.items():
        r = api.c.post("/api/sessions/import", json=bad)
        assert r.status_code == 422, (name, r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM, name
    r = api.c.post(
        "/api/sessions/import",
        content=b'{"format": "tether.session", "version": 1, "session": {',
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (400, 422) and r.headers["content-type"] == PROBLEM
    huge = {**doc, "events": doc["events"] + [{"pad": "x" * (1 << 20)}]}
    r = api.c.post(
        "/api/sessions/import",
        content=json.dumps(huge).encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert "max_import_bytes" in r.json()["detail"]
    # Nothing half-written: the same sessions as before, the same storage.
    assert {s["id"] for s in api.c.get("/api/sessions").json()["sessions"]} == before


def test_export_is_the_owners_only(
    chat: tuple[Server, Api, str],
) -> None:
    server, api, sid = chat
    add_user(server, "mallory", "correct horse battery")
    m = user_client(server, "mallory", "correct horse battery")
    try:
        for fmt in ("markdown", "json"):
            r = m.get(f"/api/sessions/{sid}/export", params={"format": fmt})
            assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        # Importing the owner's document makes a copy of mallory's own, under new ids: it
        # never touches or reveals the original.
        doc = export(api.c, sid, "json").json()
        r = m.post("/api/sessions/import", json=doc)
        assert r.status_code == 201
        assert r.json()["id"] != sid
        mine = {s["id"] for s in api.c.get("/api/sessions").json()["sessions"]}
        assert r.json()["id"] not in mine and sid in mine
    finally:
        m.close()
    assert api.c.get(f"/api/sessions/{sid}/export", params={"format": "pdf"}).status_code == 400


def test_a_batch_exports_as_its_task_tree(shared_server: Server, api: Api) -> None:
    sid = api.session("batch run")
    root = api.start(sid, "batch", {"items": ["alpha", "beta", "gamma"]})["id"]
    api.wait_status(root, "completed")
    md = export(api.c, sid, "markdown").text
    assert "## Tasks" in md and "## You" not in md
    lines = md.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("- **batch** · completed"))
    items = [line for line in lines[top + 1 :] if line.startswith("  - **")]
    assert len(items) == 3 and all("completed" in line for line in items), md
    assert [w for w in ("alpha", "beta", "gamma") if w in "\n".join(items)] == [
        "alpha",
        "beta",
        "gamma",
    ]
    doc = export(api.c, sid, "json").json()
    r = api.c.post("/api/sessions/import", json=doc)
    assert r.status_code == 201
    assert canonical(export(api.c, r.json()["id"], "json").json()) == canonical(doc)


def test_markdown_lists_a_messages_attachments_and_a_stopped_reply() -> None:
    # The document as the export writes it, for a turn whose message came with files (the
    # attachments a chat turn's input carries) and whose reply was stopped.
    turn = {
        "id": "t_1",
        "parent_id": None,
        "agent": "assistant",
        "status": "cancelled",
        "created_at": 0.0,
        "ended_at": 60.0,
        "follows": None,
        "selected_seq": 1,
        "input": {
            "text": "What is in these?",
            "attachments": [
                {
                    "name": "notes.txt",
                    "path": "uploads/notes.txt",
                    "size": 2048,
                    "media_type": "text/plain",
                },
                {
                    "name": "cat.png",
                    "path": "uploads/cat.png",
                    "size": 300,
                    "media_type": "image/png",
                },
            ],
        },
    }
    events = [
        {
            "seq": 2,
            "task_id": "t_1",
            "type": "TEXT_MESSAGE_CONTENT",
            "data": {"messageId": "m1", "delta": "Cut off"},
        },
        {
            "seq": 3,
            "task_id": "t_1",
            "type": "message.superseded",
            "data": {"messageIds": ["m1"], "toolCallIds": []},
        },
        {
            "seq": 4,
            "task_id": "t_1",
            "type": "TEXT_MESSAGE_CONTENT",
            "data": {"messageId": "m2", "delta": "The notes list three things."},
        },
    ]
    doc = {"session": {"title": ""}, "exported_at": 0.0, "tasks": [turn], "events": events}
    md = markdown.render(doc)
    assert md.startswith("# Untitled session\n")
    assert "- `notes.txt` (uploads/notes.txt, 2.0 KiB, text/plain)" in md
    assert "- `cat.png` (uploads/cat.png, 300 bytes, image/png)" in md
    assert "The notes list three things." in md and "Cut off" not in md  # superseded
    assert md.rstrip().endswith("_Stopped._")
