"""Limits on the wire, tried with raw sockets against a real server: the request head is
counted exactly, and a body must arrive whole within `body_timeout_s`."""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Any

from tests.helpers.server import SECRET, Api, Server, sse_frames

LIMIT = 4096


def _response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response, read until the server closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {
        k.lower(): v
        for k, v in (
            line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
        )
    }
    return status, headers, body


def _head(size: int, *, headers: int = 1) -> bytes:
    """A GET /healthz head of exactly `size` bytes, its padding spread over `headers`
    headers."""
    base = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    per = len(b"X-Pad-00: \r\n")
    pad = size - len(base) - 2 - headers * per
    assert pad >= headers
    lines = [
        b"X-Pad-%02d: " % i + b"a" * (pad // headers + (i < pad % headers)) + b"\r\n"
        for i in range(headers)
    ]
    head = base + b"".join(lines) + b"\r\n"
    assert len(head) == size
    return head


def _send(server: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _response(s)


def test_the_request_head_is_counted_exactly(make_server: Any) -> None:
    # Each of these heads came in one read: only the bytes of a head still unfinished after
    # a read were counted, so a head of any size that came whole was let through.
    server = make_server(TETHER_MAX_HEADER_BYTES=str(LIMIT))
    assert _send(server, _head(LIMIT))[0] == 200
    assert _send(server, _head(LIMIT, headers=40))[0] == 200
    for head in (
        _head(LIMIT + 1),
        _head(LIMIT + 1, headers=40),
        _head(LIMIT * 17 // 10),  # "70 KB" at this limit
        _head(LIMIT * 25, headers=100),  # "100 headers of 1 KB" at this limit
    ):
        status, headers, body = _send(server, head)
        assert status == 431, len(head)
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["status"] == 431
    assert _send(server, _head(LIMIT))[0] == 200  # and the server is fine


def test_a_head_split_over_many_reads_is_counted_once(make_server: Any) -> None:
    server = make_server(TETHER_MAX_HEADER_BYTES=str(LIMIT))
    for size, want in ((LIMIT, 200), (LIMIT + 1, 431)):
        head = _head(size, headers=8)
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(head), 1000):
                s.sendall(head[i : i + 1000])
            assert _response(s)[0] == want, size


def _post_head(length: int) -> bytes:
    return (
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        b"x-web-bootstrap-secret: " + SECRET.encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def _trickle(server: Server, body: bytes, every_s: float, stop_after: int | None = None) -> Any:
    """POST a body a byte at a time, `every_s` apart (stopping after `stop_after` bytes),
    until the server answers: (status, headers, body, seconds from the head to the answer)."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(_post_head(len(body)))
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < 30:
            if sent < len(body) and (stop_after is None or sent < stop_after):
                try:
                    s.sendall(body[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 1
            # The client's pace, not a wait for the server: the answer ends it at once.
            readable, _, _ = select.select([s], [], [], every_s)
            if readable:
                break
        return (*_response(s), time.monotonic() - t0)


def test_a_body_that_trickles_past_the_body_timeout_gets_408(make_server: Any) -> None:
    # 20 bytes at one per 5 s was accepted after 105 s; here one byte per 0.3 s, against
    # a body timeout of 1 s.
    server = make_server(TETHER_BODY_TIMEOUT_S="1")
    body = json.dumps({"title": "slow..."}).encode()
    assert len(body) == 20
    for stop_after in (None, 3):  # trickling, or stopped after three bytes
        status, headers, answer, took = _trickle(server, body, 0.3, stop_after)
        assert status == 408, answer
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert "within 1.0 s" in json.loads(answer)["detail"]
        assert 0.9 < took < 4
    # A body in time is fine, on the same server.
    status, _, answer, _ = _trickle(server, body, 0.01)
    assert status == 201, answer
    assert "Exception in ASGI application" not in server.log()


def test_the_body_timeout_bounds_bodies_only(make_server: Any) -> None:
    """A stream (no body) stays open well past the body timeout, and a keep-alive
    connection idles between requests as before."""
    server = make_server(TETHER_BODY_TIMEOUT_S="0.5", TETHER_HEARTBEAT_S="0.2")
    with server.client() as c:
        sid = Api(c).session()
        t0 = time.monotonic()
        beats = 0
        with c.stream("GET", f"/api/sessions/{sid}/stream") as r:
            for f in sse_frames(r):
                beats += f.event == "heartbeat"
                if beats == 8:
                    break
        assert time.monotonic() - t0 >= 1.4
        # The same pooled connection, after the stream: a POST with its body still works.
        assert c.post("/api/sessions", json={"title": "after"}).status_code == 201
