"""Files attached to a message (tether/attachments.py, routes/attachments.py, llm/attached.py),
against a real server and the fake model server: what is kept and where, what the model is
sent (text inline, an image as an image part, a mention on later turns), and what is refused
with nothing kept: too large (413, also when the body does not say its length), a type the
settings refuse (415, whatever the client calls it), a name with a folder in it, another
user's session, a storage quota that is full."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import control, model_session, say
from tests.helpers.server import Api, add_user, user_client


def png(width: int = 2) -> bytes:
    """A real, tiny PNG (a browser draws it; a model would see it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    head = width.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(width))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def attach(api: Api, sid: str, name: str, data: bytes, **headers: str) -> httpx.Response:
    return api.c.post(
        f"/api/sessions/{sid}/attachments", params={"name": name}, content=data, headers=headers
    )


def files_of(api: Api, sid: str) -> list[str]:
    r = api.c.get(f"/api/sessions/{sid}/files")
    r.raise_for_status()
    return [f["path"] for f in r.json()["files"]]


def sent(fake: RunningFakeLLM) -> list[dict[str, Any]]:
    """The messages of the last request the fake model was sent (Anthropic's format)."""
    messages: list[dict[str, Any]] = fake.fake.brain.requests[-1]["body"]["messages"]
    return messages


def blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def test_the_model_sees_the_files_and_later_turns_a_mention(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path, database_env: dict[str, str]
) -> None:
    """On SQLite, then on Postgres (the conversation's skeleton reads them from JSON)."""
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[], **database_env)
    r = attach(
        api, sid, "notes.md", "# Plan\nship it ✓\n".encode(), **{"content-type": "image/png"}
    )
    assert r.status_code == 201, r.text
    notes = r.json()
    # Typed by its bytes and name, not by what the client said.
    assert notes["name"] == "notes.md" and notes["media_type"] == "text/markdown"
    assert notes["size"] == len("# Plan\nship it ✓\n".encode())
    assert notes["path"].startswith("attachments/") and notes["path"].endswith("/notes.md")
    picture = attach(api, sid, "dot.png", png()).json()
    assert picture["media_type"] == "image/png"
    # The same name again is another file, in a folder of its own: nothing is replaced.
    again = attach(api, sid, "notes.md", b"other notes").json()
    assert again["path"] != notes["path"]
    assert sorted(files_of(api, sid)) == sorted([notes["path"], picture["path"], again["path"]])
    assert api.c.get(f"/api/sessions/{sid}/files/{picture['path']}").content == png()

    turn = say(api, sid, "what do you make of these?", attachments=[notes, picture])
    done = api.wait_status(turn["id"], "completed")
    # The turn's input names them in the shape export reads.
    assert done["input"]["attachments"] == [notes, picture]
    last = blocks(sent(fake_llm)[-1])
    text = "".join(b.get("text", "") for b in last if b["type"] == "text")
    assert text.startswith("what do you make of these?")
    assert "# Plan\nship it ✓" in text and notes["path"] in text
    images = [b for b in last if b["type"] == "image"]
    assert len(images) == 1
    assert images[0]["source"]["media_type"] == "image/png"
    assert base64.b64decode(images[0]["source"]["data"]) == png()

    # The next turn is sent the first one's message with a line per file, not the files.
    api.wait_status(say(api, sid, "and now?")["id"], "completed")
    history = sent(fake_llm)
    first = "".join(b.get("text", "") for b in blocks(history[0]) if b["type"] == "text")
    assert f"notes.md (text/markdown, {notes['size']:,} bytes) at {notes['path']}" in first
    assert f"dot.png (image/png, {picture['size']:,} bytes) at {picture['path']}" in first
    assert "ship it" not in first
    assert all(b["type"] != "image" for m in history for b in blocks(m))

    # The conversation's skeleton (what a reloaded page draws) carries them too.
    conv = api.c.get(f"/api/sessions/{sid}/conversation").json()
    assert [t["attachments"] for t in conv["turns"]] == [[notes, picture], []]

    # A regenerated reply answers the same message, with the same files.
    regen = api.c.post(f"/api/tasks/{turn['id']}/regenerate")
    assert regen.status_code == 201, regen.text
    redone = api.wait_status(regen.json()["id"], "completed")
    assert redone["input"]["attachments"] == [notes, picture]
    assert any(b["type"] == "image" for b in blocks(sent(fake_llm)[-1]))


def test_long_text_is_cut_and_a_model_without_images_is_told_the_path(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        approval=[],
        extra="images = false",
        TETHER_ATTACHMENT_INLINE_CHARS="100",
    )
    long = attach(api, sid, "log.txt", b"".join(b"line %03d\n" % i for i in range(100))).json()
    picture = attach(api, sid, "dot.png", png()).json()
    pdf = attach(api, sid, "paper.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n").json()
    assert pdf["media_type"] == "application/pdf"
    turn = say(api, sid, "look", attachments=[long, picture, pdf])
    api.wait_status(turn["id"], "completed")
    last = blocks(sent(fake_llm)[-1])
    assert all(b["type"] == "text" for b in last)
    text = "".join(b["text"] for b in last)
    assert "line 000" in text and "line 010" in text and "line 099" not in text
    assert (
        f"characters more: the whole file is in the workspace at {long['path']} (read_file opens it))"
        in text
    )
    assert "(read_file opens it)" in text
    assert (
        f"not shown here (the model does not see images); it is in the workspace at {picture['path']}"
        in text
    )
    assert f"not shown here; it is in the workspace at {pdf['path']}" in text


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    return body


def test_what_is_refused_leaves_nothing_behind(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        approval=[],
        TETHER_MAX_ATTACHMENT_BYTES="1000",
        TETHER_MAX_ATTACHMENTS_PER_MESSAGE="2",
    )
    # Past the size limit: 413, whether the body says its length or not.
    big = problem(attach(api, sid, "big.txt", b"x" * 1001), 413)
    assert "max_attachment_bytes" in big["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"y" * 100

    streamed = api.c.post(
        f"/api/sessions/{sid}/attachments", params={"name": "big.txt"}, content=chunks()
    )
    assert "max_attachment_bytes" in problem(streamed, 413)["detail"]
    assert attach(api, sid, "edge.txt", b"x" * 1000).status_code == 201  # the limit itself is fine
    # A type the settings refuse, whatever the client calls it or names it.
    elf = problem(attach(api, sid, "cat.png", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64), 415)
    assert "application/octet-stream" in elf["detail"] and "attachment_types" in elf["detail"]
    # A name with a folder in it, or that leaves the workspace.
    for name in ("../escape.txt", "a/b.txt", "..", "x\\y.txt", "a\nb.txt"):
        problem(attach(api, sid, name, b"hello"), 422)
    assert [p.rsplit("/", 1)[-1] for p in files_of(api, sid)] == ["edge.txt"]

    # A message may name only this session's attachments, each once, so many at most.
    mine = attach(api, sid, "a.txt", b"a").json()
    other_sid = api.session("another")
    theirs = attach(api, other_sid, "b.txt", b"b").json()
    for refs in (
        [theirs],
        [{"path": "../../etc/passwd"}],
        [{"path": "edge.txt"}],  # not under attachments/
        [mine, mine],
        [mine, mine, mine],
    ):
        problem(
            api.c.post(f"/api/sessions/{sid}/messages", json={"text": "hi", "attachments": refs}),
            422,
        )
    assert api.c.get(f"/api/sessions/{sid}/conversation").json()["turns"] == []

    # Another user's session is not there for them.
    add_user(server, "mallory", "correct horse battery")
    mallory = user_client(server, "mallory", "correct horse battery")
    r = mallory.post(f"/api/sessions/{sid}/attachments", params={"name": "m.txt"}, content=b"m")
    problem(r, 404)
    mine_too = mallory.post("/api/sessions", json={"title": "mallory's"}).json()["id"]
    r = mallory.post(
        f"/api/sessions/{mine_too}/messages", json={"text": "steal", "attachments": [mine]}
    )
    problem(r, 422)
    assert len(files_of(api, sid)) == 2


def test_a_full_storage_quota_keeps_nothing(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, TETHER_MAX_STORAGE_BYTES_PER_USER="20000"
    )
    assert attach(api, sid, "a.txt", b"a" * 9000).status_code == 201
    full = problem(attach(api, sid, "b.txt", b"b" * 12000), 507)
    assert "max_storage_bytes_per_user" in full["detail"]
    assert [p.rsplit("/", 1)[-1] for p in files_of(api, sid)] == ["a.txt"]


def test_an_openai_model_that_takes_images_is_sent_one(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """The same on OpenAI's wire format: a model on another server says it takes images."""
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, main="openai", approval=[], extra="images = true"
    )
    picture = attach(api, sid, "dot.png", png()).json()
    api.wait_status(say(api, sid, "see?", attachments=[picture])["id"], "completed")
    content = sent(fake_llm)[-1]["content"]
    images = [c for c in content if c["type"] == "image_url"]
    assert [i["image_url"]["url"] for i in images] == [
        "data:image/png;base64," + base64.b64encode(png()).decode()
    ]


def test_a_model_agents_task_carries_its_files_as_a_message_does(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    # POST /tasks with a model agent is a turn too: its `attachments` are resolved and sent,
    # never accepted and dropped.
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[])
    note = attach(api, sid, "note.txt", b"the code word is heron").json()
    agent = api.c.get("/api/agents").json()["agents"]
    name = next(a["name"] for a in agent if a.get("kind") == "model")
    r = api.c.post(
        f"/api/sessions/{sid}/tasks",
        json={"agent": name, "input": {"text": "hello", "attachments": [note]}},
    )
    assert r.status_code == 201, r.text
    api.wait_status(r.json()["id"], "completed")
    text = "".join(b.get("text", "") for b in blocks(sent(fake_llm)[0]))
    assert "the code word is heron" in text
    stray = {
        "path": "notes/elsewhere.txt",
        "name": "elsewhere.txt",
        "size": 1,
        "media_type": "text/plain",
    }
    r = api.c.post(
        f"/api/sessions/{sid}/tasks",
        json={"agent": name, "input": {"text": "and this", "attachments": [stray]}},
    )
    problem(r, 422)
    nameless = {**stray, "path": ""}
    r = api.c.post(
        f"/api/sessions/{sid}/tasks",
        json={"agent": name, "input": {"text": "and this", "attachments": [nameless]}},
    )
    problem(r, 422)


def test_a_message_of_files_alone_is_answered(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """No text, only files: the model is sent the files with no empty text part (providers
    refuse one), later turns a mention of them; a message of neither is refused."""
    server, api, _ = model_session(make_server, fake_llm, tmp_path, approval=[])
    sid = api.session("")  # untitled: named by the files of its first message
    note = attach(api, sid, "heron.txt", b"the code word is heron").json()
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"attachments": [note]})
    assert r.status_code == 201, r.text
    done = api.wait_status(r.json()["id"], "completed")
    assert done["input"]["text"] == "" and done["input"]["attachments"] == [note]
    assert done["result"]["text"].startswith("Reply")
    last = blocks(sent(fake_llm)[-1])
    assert all(b["text"].strip() for b in last if b["type"] == "text"), last
    assert "the code word is heron" in "".join(b.get("text", "") for b in last)
    assert api.c.get(f"/api/sessions/{sid}").json()["title"] == "heron.txt"

    # Blanks are no text: sent as the files alone too.
    picture = attach(api, sid, "dot.png", png()).json()
    blank = say(api, sid, " \n\t ", attachments=[picture])
    assert api.wait_status(blank["id"], "completed")["input"]["text"] == ""
    last = blocks(sent(fake_llm)[-1])
    assert [b["type"] for b in last] == ["text", "image"] and last[0]["text"].strip()

    # The next turn is sent each of them as a line per file, and no empty text.
    api.wait_status(say(api, sid, "and now?")["id"], "completed")
    history = sent(fake_llm)
    first = "".join(b.get("text", "") for b in blocks(history[0]) if b["type"] == "text")
    assert first.startswith("[Attached to this message, in the workspace:\n- heron.txt")
    assert "heron" not in first.split(note["path"])[1]  # the mention, not the file
    assert all(b["text"].strip() for m in history for b in blocks(m) if b["type"] == "text")
    conv = api.c.get(f"/api/sessions/{sid}/conversation").json()["turns"]
    assert [(t["text"], len(t["attachments"])) for t in conv] == [("", 1), ("", 1), ("and now?", 0)]
    # Search indexes no empty message, and still finds the replies.
    assert api.c.get("/api/search", params={"q": "reply"}).json()["results"]

    # Neither text nor a file: refused, saying what a message needs, and nothing is kept.
    for bad in ({}, {"text": ""}, {"text": "  \n"}, {"text": "", "attachments": []}):
        refused = problem(api.c.post(f"/api/sessions/{sid}/messages", json=bad), 422)
        assert refused["detail"] == "A message needs some text or an attached file.", refused
    assert len(api.c.get(f"/api/sessions/{sid}/conversation").json()["turns"]) == 3


def test_files_alone_on_openais_wire_format_have_no_empty_text_part(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """Anthropic's mapping drops an empty text part; OpenAI's sends it (and a provider may
    refuse it), so Tether must not make one."""
    server, api, sid = model_session(
        make_server, fake_llm, tmp_path, main="openai", approval=[], extra="images = true"
    )
    picture = attach(api, sid, "dot.png", png()).json()
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": "", "attachments": [picture]})
    assert r.status_code == 201, r.text
    api.wait_status(r.json()["id"], "completed")
    content = sent(fake_llm)[-1]["content"]
    assert [c["type"] for c in content] == ["text", "image_url"], content
    assert content[0]["text"].startswith("[Attached: dot.png (image/png")

    # A turn that failed is told to the next one as its files, not as an empty message.
    control(fake_llm, faults=[{"status": 400}])
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"attachments": [picture]})
    assert api.wait_status(r.json()["id"], "failed")["input"]["text"] == ""
    api.wait_status(say(api, sid, "and now?")["id"], "completed")
    users = [m["content"] for m in sent(fake_llm) if m["role"] == "user"]
    assert users[1].startswith("[Attached to this message, in the workspace:\n- dot.png"), users
    assert users[2] == "and now?"
