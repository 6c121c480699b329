"""A session's workspace in the database (tether/workspace.py), on SQLite and on Postgres:
the path rules the disk had, files and folders never both, whole writes, and a session's
files going with it. Links on the disk are nothing to it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_session, say, workspace_file
from tests.helpers.pg import fresh_database
from tests.helpers.server import Api
from tether.db.engine import Database
from tether.db.store import Store
from tether.quotas import file_bytes
from tether.workspace import PathRefused, Workspace, normalize


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"
        d = Database(url)
        d.migrate()
        yield d
        asyncio.run(d.close())
        return
    with fresh_database() as url:
        d = Database(url.replace("postgresql://", "postgresql+psycopg://"))
        d.migrate()
        yield d
        asyncio.run(d.close())


def test_paths_keep_the_disks_rules() -> None:
    assert normalize("a/./b//c.txt") == "a/b/c.txt"
    assert normalize("a/x/../b.txt") == "a/b.txt"
    for outside in ("../x", "a/../../x", "/etc/passwd", "..", "a/../.."):
        with pytest.raises(PathRefused, match="outside the workspace"):
            normalize(outside)
    for no_name in ("", ".", "a/.."):
        with pytest.raises(PathRefused, match="file name"):
            normalize(no_name)
    for bad in ("a\x00b", "a\nb", "a\x7f"):
        with pytest.raises(PathRefused, match="control character"):
            normalize(bad)
    with pytest.raises(PathRefused, match="at most"):
        normalize("x" * 256)
    with pytest.raises(PathRefused, match="at most"):
        normalize("/".join(["x" * 200] * 6))


def test_files_and_folders_on_both_backends(db: Database) -> None:
    async def go() -> None:
        store = Store(db)
        mine = await store.create_session("owner", "mine")
        other = await store.create_session("owner", "other")
        ws, ws2 = Workspace(db, mine.id), Workspace(db, other.id)
        await ws.write("notes/a.txt", b"one")
        await ws.write("notes/./a.txt", "twö".encode())  # the same file, replaced whole
        await ws.write("b.txt", b"\x00\xff binary")
        assert await ws.read("notes/a.txt") == "twö".encode()
        assert await ws.read("b.txt") == b"\x00\xff binary"
        assert await ws.list() == [("b.txt", 9), ("notes/a.txt", 4)]
        assert await ws2.read("notes/a.txt") is None and await ws2.list() == []
        # A user's files count against their storage quota (quotas.storage_bytes).
        assert await db.read(lambda c: file_bytes(c, "owner")) == 13
        # A name is a file or a folder, never both.
        with pytest.raises(PathRefused, match="'notes' is a folder"):
            await ws.write("notes", b"x")
        with pytest.raises(PathRefused, match="'b.txt' is a file"):
            await ws.write("b.txt/c", b"x")
        # "notes0" sorts right after "notes/…": not a file in the folder.
        await ws.write("notes0", b"fine")
        await ws.write("notes-x/y", b"fine")
        assert [p for p, _ in await ws.list()] == [
            "b.txt",
            "notes-x/y",
            "notes/a.txt",
            "notes0",
        ]
        await store.delete_session(mine.id, "owner")
        assert await ws.list() == [] and await ws.read("b.txt") is None

    asyncio.run(go())


def test_links_on_the_disk_cannot_redirect_a_write(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    """Found by an attacker: `write_file` wrote through a link named `<name>.tmp` and left
    `<name>` a link outside. The workspace is not on the disk any more; what an earlier
    version left there is imported at start, links and all refused."""
    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[])
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    ws = server.data_dir / "workspaces" / sid
    ws.mkdir(parents=True)
    (ws / "notes.md.tmp").symlink_to(outside)
    (ws / "notes.md").symlink_to(outside)
    (ws / "link-dir").symlink_to(tmp_path)
    done = api.wait_status(say(api, sid, "write notes.md: overwritten?")["id"], "completed")
    assert "wrote" in done["result"]["text"]
    assert outside.read_text() == "private" and os.path.islink(ws / "notes.md")
    assert workspace_file(api, sid, "notes.md") == "overwritten?"
    server.kill()
    server.start()  # the import at start skips links
    api = Api(server.client())
    assert outside.read_text() == "private"
    assert workspace_file(api, sid, "notes.md") == "overwritten?"
    assert [f["path"] for f in api.c.get(f"/api/sessions/{sid}/files").json()["files"]] == [
        "notes.md"
    ]


def test_the_files_api_is_the_owners_and_serves_downloads(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    from tests.helpers.server import add_user, user_client

    server, api, sid = model_session(make_server, fake_llm, tmp_path, approval=[])
    api.wait_status(say(api, sid, "write page.html: <script>alert(1)</script>")["id"], "completed")
    r = api.c.get(f"/api/sessions/{sid}/files/page.html")
    assert r.status_code == 200 and r.text == "<script>alert(1)</script>"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert r.headers["x-content-type-options"] == "nosniff"  # once, not twice
    slash = api.c.get(f"/api/sessions/{sid}/files/./page.html/")
    assert (
        slash.status_code == 200
        and "filename*=UTF-8''page.html" in slash.headers["content-disposition"]
    )
    assert api.c.get(f"/api/sessions/{sid}/files/nope.txt").status_code == 404
    bad = api.c.get(f"/api/sessions/{sid}/files/..%2F..%2Fetc%2Fpasswd")
    assert (
        bad.status_code in (400, 404) and bad.headers["content-type"] == "application/problem+json"
    )
    add_user(server, "mallory", "correct horse battery")
    mallory = user_client(server, "mallory", "correct horse battery")
    for url in (f"/api/sessions/{sid}/files", f"/api/sessions/{sid}/files/page.html"):
        r = mallory.get(url)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
