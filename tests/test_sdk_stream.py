"""The SDK's stream and wait against a real server behind a proxy that misbehaves: seeded
random drops, a kill -9 and restart, a 2 s token TTL, streams refused, a pruned cursor.
The stream must yield exactly the server's log (compared with the REST pages)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import tether.client as sdk
from tests.helpers.server import ROOT, SECRET, Api, Server, free_port, wait_until
from tether.client import AsyncClient, Client


class ChaosProxy:
    """A TCP proxy in front of a server. `drop`: cut each connection after a (seeded)
    random number of bytes from the server, in (low, high); `block_streams`: refuse stream
    requests and cut the open ones (the REST API still answers)."""

    def __init__(self, upstream: int, seed: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.rng = random.Random(seed)
        self.drop: tuple[int, int] | None = None
        self.block_streams = False
        self.cut_next = 0  # this many requests get no answer (their connection is cut)
        self.stall_next = 0  # this many streams go silent once live
        self.cuts = 0
        self.refused = 0
        self._streams: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            ready.set()

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def block(self, on: bool) -> None:
        def apply() -> None:
            self.block_streams = on
            if on:
                for w in list(self._streams):
                    w.transport.abort()

        self.loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)

    @staticmethod
    def _is_stream(head: bytes) -> bool:
        line = head.split(b"\r\n", 1)[0]
        return line.startswith(b"GET /api/sessions/") and b"/stream" in line

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cw.transport.abort()
            return
        budget = self.rng.randint(*self.drop) if self.drop else None
        cut = [False]  # the request just forwarded gets no answer
        stall = [False]  # this stream goes silent, its socket open

        async def up() -> None:
            while data := await cr.read(65536):
                if self._is_stream(data):
                    if self.block_streams:
                        self.refused += 1
                        return
                    self._streams.add(cw)
                    if self.stall_next > 0:
                        self.stall_next -= 1
                        stall[0] = True
                if self.cut_next > 0 and data.startswith((b"GET ", b"POST ")):
                    self.cut_next -= 1
                    cut[0] = True
                uw.write(data)
                await uw.drain()

        async def down() -> None:
            nonlocal budget
            while data := await ur.read(65536):
                if cut[0]:
                    self.cuts += 1
                    return
                if budget is not None:
                    if len(data) >= budget:
                        cw.write(data[:budget])
                        self.cuts += 1
                        return
                    budget -= len(data)
                cw.write(data)
                await cw.drain()
                if stall[0] and b"event: snapshot" in data:
                    await asyncio.Event().wait()  # live, then silent until the client hangs up

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:  # noqa: BLE001 - a test proxy: any failure ends the connection
            pass
        finally:
            for t in tasks:
                t.cancel()
            self._streams.discard(cw)
            cw.transport.abort()
            uw.transport.abort()


@pytest.fixture
def proxy_for() -> Any:
    made: list[ChaosProxy] = []

    def make(server: Server, seed: int = 28) -> ChaosProxy:
        p = ChaosProxy(server.port, seed)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _completed(item: Any, task_id: str) -> bool:
    return (
        isinstance(item, sdk.EventOut)
        and item.task_id == task_id
        and item.type == "task.status"
        and item.data.get("status") == "completed"
    )


def test_drops_a_kill_9_and_a_2_s_token_yield_exactly_the_log(
    make_server: Any, proxy_for: Any
) -> None:
    server = make_server(TETHER_ACCESS_TTL_S="2")
    proxy = proxy_for(server)
    api = Api(server.client())
    with Client(proxy.url, secret=SECRET, retry_s=60) as c:
        s = c.sessions.create("chaos")  # not deduped by the server: made before the drops
        proxy.drop = (300, 6000)
        task = s.start("batch", {"items": list(range(24)), "delay_s": 0.25})
        got: list[sdk.EventOut] = []
        with s.stream(min_delay=0.05, max_delay=0.5, seed=1) as stream:
            outage: list[str] = []

            def restart() -> None:
                server.kill()  # kill -9 mid-task; the same port comes back
                try:
                    # The stream notices, and keeps trying while nobody answers.
                    wait_until(lambda: stream.state.kind in ("reconnecting", "offline"))
                    tried = stream.reconnects
                    wait_until(lambda: stream.reconnects >= tried + 5, what="five more tries")
                    outage.append("seen")
                finally:
                    server.start()

            killer = threading.Thread(target=restart)
            for item in stream:
                assert not isinstance(item, sdk.Reset)
                assert isinstance(item, sdk.EventOut)
                got.append(item)
                if len(got) == 60:
                    killer.start()  # while the stream goes on reading
                if _completed(item, task.id):
                    break
            reconnects = stream.reconnects
        killer.join()
        assert outage == ["seen"]
        assert task.wait(timeout=60).status == "completed"
        refreshes = c.aio.tokens.refreshes
    log = api.all_events(s.id)
    assert [e.model_dump() for e in got] == log
    assert [e.seq for e in got] == list(range(1, len(log) + 1))
    assert proxy.cuts >= 10 and reconnects >= 10, (proxy.cuts, reconnects)
    assert refreshes >= 2  # the task outlived several 2 s tokens


async def test_wait_answers_while_the_stream_is_blocked(
    shared_server: Server, api: Api, proxy_for: Any
) -> None:
    proxy = proxy_for(shared_server)
    async with AsyncClient(proxy.url, secret=SECRET) as c:
        s = await c.sessions.create("blocked")
        stream = s.stream(min_delay=0.05, max_delay=0.3)
        got: list[sdk.EventOut] = []
        first = asyncio.Event()

        async def follow() -> None:
            async for item in stream:
                assert isinstance(item, sdk.EventOut)
                got.append(item)
                first.set()

        follower = asyncio.create_task(follow())
        task = await s.start("batch", {"items": list(range(8)), "delay_s": 0.2})
        await asyncio.wait_for(first.wait(), 30)
        proxy.block(True)
        await _until(lambda: stream.state.kind in ("reconnecting", "offline") and proxy.refused)
        seen = len(got)
        done = await task.wait(timeout=60, poll_s=0.2)
        assert done.status == "completed"  # the server's status, with no stream
        assert stream.state.kind != "live" and len(got) == seen
        # Let the stream back in: it catches up exactly.
        proxy.block(False)
        stream.poke()
        await _until(
            lambda: got and got[-1].seq == api.c.get(f"/api/sessions/{s.id}").json()["head_seq"]
        )
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await stream.aclose()
    assert [e.model_dump() for e in got] == api.all_events(s.id)


async def _until(check: Any, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


def test_a_create_whose_answer_is_lost_is_retried_once_with_its_key(
    shared_server: Server, api: Api, proxy_for: Any
) -> None:
    proxy = proxy_for(shared_server)
    with Client(proxy.url, secret=SECRET) as c:
        s = c.sessions.create()
        proxy.cut_next = 1  # the server starts the task; its answer is lost on the way
        task = s.start("one_item", {"item": 1})
        assert proxy.cuts == 1
        proxy.cut_next = 1
        turn = s.send("hello")
        assert proxy.cuts == 2
        tree = api.c.get(f"/api/sessions/{s.id}/tasks").json()["tasks"]
        assert sorted(t["id"] for t in tree) == sorted([task.id, turn.id])
        # A session is not deduped by the server: a lost answer is not sent again.
        proxy.cut_next = 1
        with pytest.raises(sdk.ConnectionLost):
            c.sessions.create()


def test_a_pruned_cursor_rebuilds_from_the_snapshot_and_says_so(make_server: Any) -> None:
    server = make_server(TETHER_RETENTION_EVENTS="20")
    api = Api(server.client())
    with Client(server.url, secret=SECRET) as c:
        s = c.sessions.create()
        s.start("blast", {"count": 300, "steps": 3}).wait(timeout=60)
        head = c.sessions.get(s.id)
        got: list[Any] = []
        with s.stream(after=5) as stream:  # a cursor long pruned
            for item in stream:
                got.append(item)
                if isinstance(item, sdk.EventOut) and item.seq == head.head_seq:
                    break
            assert stream.resets == 1
    reset, *events = got
    assert isinstance(reset, sdk.Reset) and reset.snapshot.first_seq == head.first_seq
    log = api.c.get(f"/api/sessions/{s.id}/events", params={"after": head.first_seq - 1})
    assert not log.json()["more"]
    assert [e.model_dump() for e in events] == log.json()["events"]
    assert [e.seq for e in events] == list(range(head.first_seq, head.head_seq + 1))


def test_a_silent_stream_is_abandoned_after_2_5_heartbeats(
    shared_server: Server, proxy_for: Any
) -> None:
    proxy = proxy_for(shared_server)  # the test server's heartbeat: 0.2 s
    with Client(proxy.url, secret=SECRET) as c:
        s = c.sessions.create()
        proxy.stall_next = 1
        states: list[sdk.ConnectionState] = []
        with s.stream(control=True, min_delay=0.01, max_delay=0.05) as stream:
            for item in stream:
                if isinstance(item, sdk.ConnectionState):
                    states.append(item)
                if len([x for x in states if x.kind == "live"]) == 2:
                    break
    assert any(x.kind != "live" and x.reason == "stalled" for x in states), states


def test_the_stream_says_its_state_and_the_server_snapshot(shared_server: Server) -> None:
    with Client(shared_server.url, secret=SECRET) as c:
        s = c.sessions.create()
        kinds: list[str] = []
        with s.stream(control=True) as stream:
            assert stream.state.kind == "connecting"
            for item in stream:
                if isinstance(item, sdk.ConnectionState):
                    kinds.append(item.kind)
                if isinstance(item, sdk.Heartbeat):
                    break
            assert stream.state.kind == "live" and stream.snapshot is not None
            assert stream.snapshot.session_id == s.id
        assert kinds[:2] == ["connecting", "live"]
        assert stream.state.kind == "stopped"


def test_a_server_gone_for_a_while_is_offline_and_live_again_when_it_returns(
    make_server: Any,
) -> None:
    server = make_server()
    with Client(server.url, secret=SECRET) as c:
        s = c.sessions.create()
        kinds: list[str] = []
        opts = {"min_delay": 0.05, "max_delay": 0.2, "offline_after": 3, "offline_after_s": 1.0}
        with s.stream(control=True, **opts) as stream:
            for item in stream:
                if not isinstance(item, sdk.ConnectionState):
                    continue
                kinds.append(item.kind)
                if kinds.count("live") == 1 and item.kind == "live":
                    server.kill()
                elif server.proc is None and (item.kind == "offline" or len(kinds) > 60):
                    server.start()  # back (bounded, if "offline" never came): the next try
                elif item.kind == "live":
                    break
    # Reconnecting first (a blip is not "offline"), offline once the tries and the second
    # have passed, then live again.
    first_down = kinds.index("reconnecting")
    assert "offline" not in kinds[:first_down] and kinds[first_down - 1] == "live"
    assert kinds[-1] == "live" and "offline" in kinds, kinds
    gone = kinds[first_down:-1]
    assert set(gone) <= {"reconnecting", "offline"}, kinds


def test_ctrl_c_stops_a_sync_wait_at_once_and_the_task_runs_on(shared_server: Server) -> None:
    api = Api(shared_server.client())
    sid = api.c.post("/api/sessions", json={"title": "ctrl-c"}).json()["id"]
    task = api.start(sid, "batch", {"items": [1, 2, 3], "delay_s": 2})
    code = (
        "import os, sys, time\n"
        "from tether.client import Client\n"
        "with Client(sys.argv[1], secret=sys.argv[2]) as c:\n"
        "    try:\n"
        "        c.tasks.get(sys.argv[3])\n"  # (signed in: the wait's first ask is quick)
        "        print('waiting', flush=True)\n"
        "        c.tasks.wait(sys.argv[3], timeout=120)\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted', time.monotonic(), flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, shared_server.url, SECRET, task["id"]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    said, at = proc.stdout.readline().split()
    assert proc.wait(30) == 0 and said == "interrupted"
    assert float(at) - sent < 5  # not after the wait's 120 s, nor the task's 6 s
    assert api.task(task["id"])["status"] == "running"  # a client's Ctrl-C cancels nothing
