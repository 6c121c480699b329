"""Issue 30's features under attack: search, export/import/share links, attachments, usage.

Real server, real SQLite file. Each test is a request that once broke (a 500, or input
taken that should have been refused), and fails without its fix.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.helpers.server import SECRET, Api, wait_until

PROBLEM = "application/problem+json"


def refused(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM
    return str(r.json()["detail"])


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        # Year 1 at +14:00 is in year 0 UTC; 9999-12-31 at -12:00 in year 10000: both once 500.
        ({"from": "0001-01-01T00:00:00+14:00"}, "0001-01-02T00:00:00Z", None),
        ({"to": "9999-12-31T23:59:59-12:00"}, None, "9999-12-30T00:00:00Z"),
        ({"from": "9999-12-31T23:59:59-12:00"}, "9999-12-30T00:00:00Z", "9999-12-30T00:00:00Z"),
    ],
)
def test_usage_windows_at_the_ends_of_the_calendar_are_answered(
    api: Api, query: dict[str, str], start: str | None, end: str | None
) -> None:
    r = api.c.get("/api/usage", params=query)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["total"]["calls"] == 0
    if start is not None:
        assert body["from"] == start
    if end is not None:
        assert body["to"] == end


@pytest.mark.parametrize(
    "name",
    [
        "\u202etxt.exe",  # right-to-left override: shows as "exe.txt"
        "invoice\u202egpj.exe",
        "a\u200bb.txt",  # zero-width space: two names that look alike
        "\ufeffnotes.md",  # byte order mark
        "x\u2066y.txt",  # left-to-right isolate
    ],
)
def test_attachment_names_with_invisible_or_direction_marks_are_refused(
    api: Api, name: str
) -> None:
    sid = api.session("attach")
    r = api.c.post(f"/api/sessions/{sid}/attachments", params={"name": name}, content=b"hello")
    assert "invisible" in refused(r, 422)
    files = api.c.get(f"/api/sessions/{sid}/files").json()["files"]
    assert files == []  # nothing kept


def test_an_upload_cut_off_is_not_a_server_failure(make_server: Any) -> None:
    """A body shorter than its Content-Length, then the connection closed: an upload cut
    off. It was logged as an internal error with a traceback, one per request anyone sent
    (JSON bodies were not: their reader stops on the hang-up)."""
    server = make_server()
    api = Api(server.client())
    sid = api.session("cut off")
    head = (
        f"POST /api/sessions/{sid}/attachments?name=a.txt HTTP/1.1\r\nHost: x\r\n"
        f"x-web-bootstrap-secret: {SECRET}\r\nContent-Type: text/plain\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head.encode() + b"the first words of a long")
        time.sleep(0.3)
    with pytest.raises(AssertionError, match="timed out"):  # (it was logged within ms)
        wait_until(lambda: "failed (reference" in server.log(), timeout=3)
    assert "Traceback" not in server.log()
    assert api.c.get(f"/api/sessions/{sid}/files").json()["files"] == []  # nothing kept


def _turn_doc(inp: Any, **task: Any) -> dict[str, Any]:
    """An export of one model agent's turn (the demo agent's), as a hostile user edits it."""
    turn = {"id": "t_x", "agent": "demo", "status": "completed", "created_at": 1.0}
    return {
        "format": "tether.session",
        "version": 1,
        "session": {"title": "edited", "head_seq": 0},
        "tasks": [{**turn, "selected_seq": 0, "created_seq": 0, "input": inp, **task}],
        "events": [],
    }


@pytest.mark.parametrize(
    "inp",
    [
        {"text": {"a": 1}, "attachments": "x"},
        {"text": ["a"]},
        {"text": 5},
        {"text": "hi", "attachments": [{"path": 5}]},
        {"text": "hi", "attachments": "x"},
    ],
)
def test_an_imported_turn_of_any_shape_reads_back(api: Api, inp: Any) -> None:
    """An import takes any JSON as a turn's input; every read of the session must still
    answer (the conversation, its events, both exports), never a 500."""
    r = api.c.post("/api/sessions/import", json=_turn_doc(inp))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    for path in ("conversation", "conversation?events=5", "export", "export?format=json"):
        got = api.c.get(f"/api/sessions/{sid}/{path}")
        assert got.status_code == 200, (path, got.text)


def test_uploads_at_once_do_not_pass_the_storage_quota_together(make_server: Any) -> None:
    """Each upload checked the quota, then wrote: eight at once each saw room for itself,
    and all were kept, eight times past the quota."""
    server = make_server(TETHER_MAX_STORAGE_BYTES_PER_USER="1000000")
    api = Api(server.client())
    sid = api.session("race")
    body = b"x" * 400_000  # two fit, three do not

    def upload(i: int) -> int:
        with server.client(timeout=60) as c:
            r = c.post(
                f"/api/sessions/{sid}/attachments", params={"name": f"{i}.txt"}, content=body
            )
            return r.status_code

    with ThreadPoolExecutor(8) as pool:
        codes = Counter(pool.map(upload, range(8)))
    assert codes[201] <= 2 and codes[201] + codes[507] == 8, codes
    files = api.c.get(f"/api/sessions/{sid}/files").json()["files"]
    assert sum(f["size"] for f in files) <= 1_000_000
