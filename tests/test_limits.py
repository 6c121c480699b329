"""Bounds that hold whatever a client does: snapshot size, memory per stream, the wire."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.helpers.server import SECRET, Api, Server, sse_frames, wait_until


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def insert_tasks(server: Server, sid: str, n: int, status: str, start: float) -> None:
    """Rows as the log writes them, straight into the server's SQLite file."""
    with sqlite3.connect(server.data_dir / "tether.db", timeout=30) as db:
        db.executemany(
            "INSERT INTO tether_tasks (id, session_id, parent_id, agent, input, status, "
            "error, created_at, last_seq) VALUES (?, ?, NULL, 'item', '{}', ?, ?, ?, 0)",
            [
                (f"t_bulk{status}{i}", sid, status, '{"message":"' + "e" * 2000 + '"}', start + i)
                for i in range(n)
            ],
        )
        db.execute("UPDATE tether_sessions SET task_count = task_count + ? WHERE id = ?", (n, sid))


# -- item 9: opening a stream on a session of ten thousand tasks --------------------------


def test_a_stream_snapshot_is_bounded_and_keeps_every_unfinished_task(make_server: Any) -> None:
    server = make_server(TETHER_SNAPSHOT_TASKS="500")
    api = Api(server.client())
    sid = api.session()
    insert_tasks(server, sid, 3, "running", 0.0)  # the oldest: still running
    insert_tasks(server, sid, 10_000, "failed", 1.0)
    with server.client(timeout=30) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            raw = next(line for line in r.iter_lines() if line.startswith("data: "))
    snap = json.loads(raw[6:])
    assert snap["task_count"] == 10_003 and snap["tasks_truncated"] is True
    assert len(snap["tasks"]) == 500
    assert {t["id"] for t in snap["tasks"] if t["status"] == "running"} == {
        f"t_bulkrunning{i}" for i in range(3)
    }
    assert all("input" not in t and "result" not in t for t in snap["tasks"])
    assert len(raw) < 400_000  # error messages are shortened in the snapshot
    # The rest of the tree is a REST read away.
    assert len(api.c.get(f"/api/sessions/{sid}/tasks").json()["tasks"]) == 10_003


# -- item 10: a client that never reads ---------------------------------------------------


def test_a_stuck_client_costs_bounded_memory_whatever_the_event_size(make_server: Any) -> None:
    server = make_server()
    api = Api(server.client())
    sid = api.session()
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", server.port))
    stuck.sendall(
        f"GET /api/sessions/{sid}/stream HTTP/1.1\r\nHost: x\r\n"
        f"x-web-bootstrap-secret: {SECRET}\r\n\r\n".encode()
    )
    assert b"200 OK" in stuck.recv(1024)  # then never read again
    warm = api.start(sid, "big_events", {"count": 5, "size": 500_000})["id"]
    api.wait_status(warm, "completed")
    before = rss_kib(server.proc.pid)
    task = api.start(sid, "big_events", {"count": 300, "size": 500_000})["id"]  # 150 MB
    api.wait_status(task, "completed", timeout=120)
    grown_mib = (rss_kib(server.proc.pid) - before) / 1024
    print(f"one stuck client, 150 MB of events: the server grew {grown_mib:.0f} MiB")
    assert grown_mib < 60, f"the server grew {grown_mib:.0f} MiB for one stuck client"
    stuck.close()
    # And a client that reads gets every byte of it.
    head = api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
    seen = []
    with server.client(timeout=60) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            for f in sse_frames(r):
                if f.event == "message":
                    seen.append(f.data["seq"])
                    if f.data["seq"] == head:
                        break
    assert seen == list(range(1, head + 1))


def test_event_pages_stop_at_the_byte_budget(make_server: Any) -> None:
    server = make_server(TETHER_PAGE_BYTES=str(1 << 20))
    api = Api(server.client())
    sid = api.session()
    api.wait_status(api.start(sid, "big_events", {"count": 20, "size": 300_000})["id"], "completed")
    page = api.c.get(f"/api/sessions/{sid}/events").json()
    assert page["more"] is True and len(page["events"]) < 10
    assert [e["seq"] for e in api.all_events(sid)] == list(
        range(1, api.c.get(f"/api/sessions/{sid}").json()["head_seq"] + 1)
    )


# -- item 13: limits on the wire ----------------------------------------------------------


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any], bytes]:
    """One HTTP response off a raw socket, read until the server closes it."""
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(
        line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
    )
    return status, headers, body


def test_an_oversized_request_head_is_refused_with_431(make_server: Any) -> None:
    server = make_server()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 64 MiB offered; the server stops taking long before
                s.sendall(b"a" * (1 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = read_response(s)
    assert status == 431 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 431
    with server.client() as c:  # the server is fine
        assert c.get("/healthz").status_code == 200


def test_half_open_and_slow_connections_are_closed(make_server: Any) -> None:
    server = make_server(TETHER_HEADER_TIMEOUT_S="1")
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            status, headers, _ = read_response(slow)
            assert status == 408 and headers["content-type"] == "application/problem+json"
        idle.settimeout(10)
        assert idle.recv(1) == b""  # closed without a word: it never said anything


def test_connections_past_the_limit_get_503_and_the_server_recovers(make_server: Any) -> None:
    server = make_server(TETHER_MAX_CONNECTIONS="5", TETHER_HEADER_TIMEOUT_S="30")
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        wait_until(lambda: _refused(server), what="the sixth connection to be refused")
    finally:
        for s in held:
            s.close()
    wait_until(lambda: _healthz(server) == 200, what="room again")


def _refused(server: Server) -> bool:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(s)
    return status == 503 and json.loads(body)["title"] == "Service unavailable"


def _healthz(server: Server) -> int:
    with server.client() as c:
        return c.get("/healthz").status_code


def test_a_stream_outlives_the_request_head_timeout(make_server: Any) -> None:
    """A stream is not a request head: it may stay open far past the head timeout."""
    server = make_server(TETHER_HEADER_TIMEOUT_S="1", TETHER_HEARTBEAT_S="0.2")
    sid = Api(server.client()).session()
    beats = 0
    t0 = time.monotonic()
    with server.client(timeout=10) as c:
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            for f in sse_frames(r):
                beats += f.event == "heartbeat"
                if beats == 15:
                    break
    assert time.monotonic() - t0 >= 2.5
