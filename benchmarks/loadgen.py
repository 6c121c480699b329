"""Load-generating processes: each runs many SSE clients on one asyncio loop."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from benchmarks.sse import SSE, frame_seq, frame_ts


def _headers(token: str, cursor: int = 0) -> dict[str, str]:
    h = {"Authorization": f"Bearer {token}"}
    if cursor:
        h["Last-Event-ID"] = str(cursor)
    return h


def follow(port: int, token: str, session: str, stop_type: bytes, out: Any) -> None:
    """One client: record receive time of each event until a frame containing stop_type."""

    async def main() -> None:
        s = await SSE.open("127.0.0.1", port, f"/api/sessions/{session}/stream", _headers(token))
        out.put(("ready", time.time()))
        n = 0
        first = None
        async for f in s.frames():
            if frame_seq(f) is None:
                continue
            n += 1
            if first is None:
                first = time.time()
            if stop_type in f:
                break
        out.put(("done", {"events": n, "first": first, "last": time.time()}))
        s.close()

    asyncio.run(main())


def subscribers(
    port: int,
    token: str,
    sessions: list[str],
    per_session: int,
    stop_type: bytes,
    drop: MpEvent | None,
    out: Any,
    latency: bool = True,
) -> None:
    """per_session clients on each session; report readiness, latencies and seqs seen.

    With `drop` set, every client hangs up at once when it fires (sockets aborted) and
    reconnects with its cursor: a reconnect storm. Each reports when it is live again."""

    async def main() -> None:
        stats: dict[str, Any] = {"seqs": [], "lat": [], "reconnected": []}
        ready = asyncio.Event()
        open_now: set[SSE] = set()
        dropped = asyncio.Event()
        total = len(sessions) * per_session
        counter = [0]

        async def client(session: str) -> None:
            seqs: list[int] = []
            lat: list[float] = []
            cursor = 0
            while True:
                s = await SSE.open(
                    "127.0.0.1", port, f"/api/sessions/{session}/stream", _headers(token, cursor)
                )
                open_now.add(s)
                live = False
                try:
                    async for f in s.frames():
                        if not live:
                            live = True
                            if dropped.is_set():
                                stats["reconnected"].append(time.time())
                            else:
                                counter[0] += 1
                                if counter[0] == total:
                                    ready.set()
                        seq = frame_seq(f)
                        if seq is None:
                            continue
                        seqs.append(seq)
                        cursor = seq
                        if latency:
                            ts = frame_ts(f)
                            if ts is not None:
                                lat.append(time.time() - ts)
                        if stop_type in f:
                            stats["seqs"].append(seqs)
                            stats["lat"].extend(lat)
                            return
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    pass
                finally:
                    open_now.discard(s)
                    s.close()
                if not dropped.is_set():
                    raise RuntimeError("stream ended early")

        tasks = []
        for session in sessions:
            for _ in range(per_session):
                tasks.append(asyncio.create_task(client(session)))
                await asyncio.sleep(0)
        await ready.wait()
        out.put(("ready", time.time()))
        if drop is not None:
            while not drop.is_set():
                await asyncio.sleep(0.001)
            dropped.set()
            at = time.time()
            for s in list(open_now):
                s.close()
            out.put(("dropped", at))
        await asyncio.gather(*tasks)
        out.put(("done", stats))

    asyncio.run(main())


def idle(
    port: int, token: str, sessions: list[str], per_session: int, hold: MpEvent, out: Any
) -> None:
    """Open idle streams, report when all are live, hold them until `hold` is cleared."""

    async def one(session: str, opened: list[int], all_open: asyncio.Event, total: int) -> SSE:
        s = await SSE.open("127.0.0.1", port, f"/api/sessions/{session}/stream", _headers(token))
        async for _ in s.frames():  # the snapshot
            break
        opened[0] += 1
        if opened[0] == total:
            all_open.set()
        return s

    async def drain(s: SSE) -> None:
        try:
            async for _ in s.chunks():
                pass
        except Exception:  # noqa: BLE001 - closing at the end
            pass

    async def main() -> None:
        opened = [0]
        all_open = asyncio.Event()
        total = len(sessions) * per_session
        streams: list[SSE] = []
        sem = asyncio.Semaphore(200)

        async def paced(session: str) -> None:
            async with sem:
                streams.append(await one(session, opened, all_open, total))

        await asyncio.gather(*(paced(s) for s in sessions for _ in range(per_session)))
        drains = [asyncio.create_task(drain(s)) for s in streams]
        out.put(("ready", time.time()))
        while hold.is_set():
            await asyncio.sleep(0.05)
        for s in streams:
            s.close()
        for d in drains:
            d.cancel()
        out.put(("done", len(streams)))

    asyncio.run(main())
