"""Run every benchmark against a real server on the embedded default, print a table, write JSON.

    .venv/bin/python -m benchmarks [--runs 3] [--only throughput,resume,...,llm,web,chat,delegation,distributed,search] [--out FILE]

The server runs in its own process (uvicorn, one SQLite file); clients run in separate
load-generating processes on loopback. Everything goes through the authenticated path (a
bearer token from POST /auth). Each figure is the median over repeated runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import loadgen
from benchmarks.sse import SSE, frame_seq
from tests.helpers.server import ROOT, SECRET, Server, free_port, wait_until

CTX = mp.get_context("spawn")
TARGETS = {
    "throughput_eps": ("≥", 20_000),
    # Issue 29: the first replayed event within 2 ms (the bare stack: ~1.4 ms), catch-up at
    # 100,000 events/s; the storm of 2,000 reconnecting clients all live within 5 s.
    "resume_first_ms": ("≤", 2.0),
    "resume_catchup_eps": ("≥", 100_000),
    "idle_kib_per_stream": ("≤", 40.0),
    "idle_streams_max": ("≥", 10_000),
    "storm_all_live_s": ("≤", 5.0),
    "storm_lost": ("≤", 0),
    "fanout_1000_p99_ms": ("≤", 250.0),
    "web_commit_to_screen_p99_ms": ("≤", 100.0),
    "web_reload_to_live_s": ("≤", 1.0),
    # Issue 25: 2,000 messages open usable within a second; a new reply streams smoothly.
    "chat_open_to_usable_s": ("≤", 1.0),
    "chat_stream_fps": ("≥", 50.0),
    "chat_stream_longest_task_ms": ("≤", 50.0),
    # Issue 11: ≤ 5 ms on the embedded SQLite file, ≤ 10 ms on Postgres.
    "delegation_ms": (
        ("≤", 10.0)
        if os.environ.get("TETHER_DATABASE_URL", "").startswith("postgres")
        else ("≤", 5.0)
    ),
    # Issue 29: 2 API processes + 2 workers on Postgres fan out as fast as one process
    # does, and delegate within 3 ms.
    "dist_fanout_1000_p99_ms": ("≤", 250.0),
    "dist_delegation_ms": ("≤", 3.0),
    # Issue 29: 50 model turns at 100 one-token deltas a second each keep up: a token is on
    # the client within 250 ms (the 50 ms coalescing included), the API process spends at
    # most 0.1 s of CPU per 1,000 tokens (its model processes are reported beside it).
    "llm1_token_latency_p99_ms": ("≤", 250.0),
    "llm1_api_cpu_s_per_1000_tokens": ("≤", 0.1),
    # Issue 30: a search over 100,000 messages of two users, on each backend.
    "search_sqlite_p95_ms": ("≤", 50.0),
    "search_postgres_p95_ms": ("≤", 50.0),
}


# A benchmark measures the server, not one user's quotas: thousands of streams, sessions and
# queued turns of one user.
UNLIMITED = {
    f"TETHER_{name}": "0"
    for name in (
        "MAX_STREAMS_PER_USER",
        "MAX_SESSIONS_PER_USER",
        "MAX_QUEUED_TURNS",
        "MAX_STORAGE_BYTES_PER_USER",
    )
} | {"TETHER_MIRROR_CHECK": "0"}  # the tests' server helper checks the mirror; not here


class Bench:
    def __init__(self, tmp: Path, **env: str) -> None:
        d = tmp / f"server-{time.time_ns()}"
        d.mkdir()
        self.server = Server(
            d,
            env={
                "TETHER_AGENTS": json.dumps(["benchmarks.agents"]),
                "TETHER_ACCESS_TTL_S": "3600",
                "TETHER_HEARTBEAT_S": "15",
                **UNLIMITED,
                **env,
            },
        )
        self.server.start()
        self._sign_in(self.server.url)

    def _sign_in(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        r = self.http.post("/auth", json={"secret": SECRET})
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def port(self) -> int:
        return self.server.port

    def session(self) -> str:
        return str(self.http.post("/api/sessions", json={"title": "bench"}).json()["id"])

    def start(self, sid: str, agent: str, input: dict[str, Any]) -> str:
        r = self.http.post(f"/api/sessions/{sid}/tasks", json={"agent": agent, "input": input})
        r.raise_for_status()
        return str(r.json()["id"])

    def wait_done(self, task_id: str, timeout: float = 300) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (
                    (t := self.http.get(f"/api/tasks/{task_id}").json())["status"]
                    in ("completed", "failed", "cancelled", "interrupted")
                    and t
                ),
                timeout=timeout,
                interval=0.05,
            )
        )

    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def stop(self) -> None:
        self.http.close()
        self.server.stop()


class Cluster(Bench):
    """The distributed setup: 2 API processes (`serve --no-worker`) behind Debian's nginx
    (the deployment guide's config) and 2 workers, on a fresh Postgres database. Clients
    talk to nginx."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        from tests.helpers.pg import shared_env
        from tests.helpers.proxy import nginx_in_front

        env = shared_env(
            db_url,
            TETHER_AGENTS=json.dumps(["benchmarks.agents"]),
            TETHER_ACCESS_TTL_S="3600",
            TETHER_HEARTBEAT_S="15",
            TETHER_TRUSTED_PROXIES='["127.0.0.1"]',
            **UNLIMITED,
        )
        self.servers: list[Server] = []
        base = tmp / f"cluster-{time.time_ns()}"
        for name, command, args in (
            ("api-1", "serve", ("--no-worker",)),
            ("api-2", "serve", ("--no-worker",)),
            ("worker-1", "worker", ()),
            ("worker-2", "worker", ()),
        ):
            d = base / name
            d.mkdir(parents=True)
            server = Server(d, env={**env, "TETHER_EXECUTOR_ID": name}, command=command, args=args)
            self.servers.append(server.start())
        ups = "\n    ".join(f"server 127.0.0.1:{s.port};" for s in self.servers[:2])
        (base / "nginx").mkdir()
        self._nginx = nginx_in_front(base / "nginx", ups)
        url = self._nginx.__enter__()
        self.server = self.servers[0]
        self.nginx_port = int(url.rsplit(":", 1)[1])
        self._sign_in(url)

    @property
    def port(self) -> int:
        return self.nginx_port

    def stop(self) -> None:
        self.http.close()
        self._nginx.__exit__(None, None, None)
        for server in self.servers:
            server.stop()


def distributed(tmp: Path, runs: int) -> dict[str, Any]:
    """Throughput, fan-out and delegation again, with 2 API processes behind nginx and 2
    workers on Postgres (`dist_` in front of each measure's name)."""
    from tests.helpers.pg import fresh_database

    out: dict[str, Any] = {}
    for case in (throughput, fanout, delegation):
        with fresh_database() as url:
            got = case(tmp, runs, make=lambda tmp: Cluster(tmp, url))
        out |= {f"dist_{k}": v for k, v in got.items()}
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collect(q: Any, n: int, kind: str, timeout: float = 600) -> list[Any]:
    out = []
    deadline = time.time() + timeout
    while len(out) < n:
        k, v = q.get(timeout=max(1, deadline - time.time()))
        if k == kind:
            out.append(v)
    return out


def procs(target: Callable[..., None], argsets: list[tuple[Any, ...]]) -> list[Any]:
    ps = [CTX.Process(target=target, args=a, daemon=True) for a in argsets]
    for p in ps:
        p.start()
    return ps


def join(ps: list[Any]) -> None:
    for p in ps:
        p.join(60)
        if p.is_alive():
            p.kill()


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


# ---- 1. throughput -------------------------------------------------------------------------


def throughput(
    tmp: Path, runs: int, n: int = 100_000, make: Callable[[Path], Bench] = Bench
) -> dict[str, Any]:
    b = make(tmp)
    rates = []
    try:
        for _ in range(runs):
            sid = b.session()
            q = CTX.Queue()
            ps = procs(loadgen.follow, [(b.port, b.token, sid, b'"status":"completed"', q)])
            collect(q, 1, "ready")
            t0 = time.time()
            task = b.start(sid, "blast", {"count": n, "steps": 10})
            (done,) = collect(q, 1, "done")
            rates.append(done["events"] / (done["last"] - t0))
            join(ps)
            b.wait_done(task)
    finally:
        b.stop()
    return {
        "throughput_eps": statistics.median(rates),
        "throughput_runs": rates,
        "throughput_events": n,
    }


def _limit_server() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "benchmarks.limit", "--port", str(port)], cwd=ROOT)
    wait_until(lambda: _port_open(port), timeout=30)
    return p, port


def _port_open(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/frames?n=1", timeout=1)
        return True
    except httpx.TransportError:
        return False


async def _read_frames(
    port: int, path: str, headers: dict[str, str], last_seq: int
) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    s = await SSE.open("127.0.0.1", port, path, headers)
    first = None
    n = 0
    async for f in s.frames():
        seq = frame_seq(f)
        if seq is None:
            continue
        n += 1
        if first is None:
            first = time.perf_counter()
        if seq >= last_seq:
            break
    end = time.perf_counter()
    s.close()
    assert first is not None
    return first - t0, end - t0, n


def limit(runs: int, n_throughput: int = 100_000, n_resume: int = 10_000) -> dict[str, Any]:
    p, port = _limit_server()
    try:
        for n in (n_throughput, n_resume):
            asyncio.run(_read_frames(port, f"/frames?n={n}", {}, n))  # warm the frame cache
        tput = [
            asyncio.run(_read_frames(port, f"/frames?n={n_throughput}", {}, n_throughput))
            for _ in range(runs)
        ]
        res = [
            asyncio.run(_read_frames(port, f"/frames?n={n_resume}", {}, n_resume))
            for _ in range(max(runs, 5))
        ]
    finally:
        p.kill()
        p.wait()
    return {
        "limit_throughput_eps": statistics.median(n / total for _, total, n in tput),
        "limit_resume_first_ms": statistics.median(first * 1000 for first, _, _ in res),
        "limit_resume_catchup_eps": statistics.median(n / total for _, total, n in res),
    }


# ---- 4. resume -----------------------------------------------------------------------------


def resume(tmp: Path, runs: int, n: int = 10_000) -> dict[str, Any]:
    b = Bench(tmp)
    try:
        sid = b.session()
        b.wait_done(b.start(sid, "blast", {"count": n, "steps": 10}))
        head = b.http.get(f"/api/sessions/{sid}").json()["head_seq"]
        headers = {"Authorization": f"Bearer {b.token}"}
        asyncio.run(_read_frames(b.port, f"/api/sessions/{sid}/stream", headers, head))  # warm-up
        res = [
            asyncio.run(_read_frames(b.port, f"/api/sessions/{sid}/stream", headers, head))
            for _ in range(max(runs, 5))
        ]
    finally:
        b.stop()
    return {
        "resume_backlog": head,
        "resume_first_ms": statistics.median(first * 1000 for first, _, _ in res),
        "resume_catchup_eps": statistics.median(k / total for _, total, k in res),
    }


# ---- 2. fan-out ----------------------------------------------------------------------------


def fanout(
    tmp: Path,
    runs: int,
    ks: tuple[int, ...] = (10, 100, 1000),
    events: int = 500,
    make: Callable[[Path], Bench] = Bench,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    b = make(tmp)
    try:
        for k in ks:
            rates, p50s, p99s = [], [], []
            for _ in range(runs):
                sid = b.session()
                nproc = 1 if k <= 10 else 2 if k <= 100 else 4
                q = CTX.Queue()
                ps = procs(
                    loadgen.subscribers,
                    [
                        (b.port, b.token, [sid], k // nproc, b'"status":"completed"', None, q)
                        for _ in range(nproc)
                    ],
                )
                collect(q, nproc, "ready", timeout=120)
                t0 = time.time()
                # 500 events over ~5 s, in small bursts: a lively task, not a flood.
                b.start(sid, "blast", {"count": events, "steps": 100, "pause_s": 0.05})
                done = collect(q, nproc, "done")
                join(ps)
                lat = [x for d in done for x in d["lat"]]
                delivered = sum(len(s) for d in done for s in d["seqs"])
                rates.append(delivered / (time.time() - t0))
                p50s.append(percentile(lat, 50) * 1000)
                p99s.append(percentile(lat, 99) * 1000)
            out[f"fanout_{k}_deliveries_per_s"] = statistics.median(rates)
            out[f"fanout_{k}_p50_ms"] = statistics.median(p50s)
            out[f"fanout_{k}_p99_ms"] = statistics.median(p99s)
    finally:
        b.stop()
    return out


# ---- 3. idle streams -----------------------------------------------------------------------


def idle_streams(
    tmp: Path, cs: tuple[int, ...] = (1000, 5000, 10_000), window_s: float = 10.0
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in cs:
        b = Bench(tmp, TETHER_HEARTBEAT_S="5")
        try:
            sessions = [b.session() for _ in range(100)]
            # Warm-up: one stream opened and closed, so first-use allocations are in the base.
            hold = CTX.Event()
            hold.set()
            q = CTX.Queue()
            ps = procs(loadgen.idle, [(b.port, b.token, sessions[:1], 1, hold, q)])
            collect(q, 1, "ready")
            hold.clear()
            collect(q, 1, "done")
            join(ps)
            time.sleep(1)
            base = rss_kib(b.pid())
            nproc = 4
            hold.set()
            ps = procs(
                loadgen.idle,
                [(b.port, b.token, sessions[i::nproc], c // 100, hold, q) for i in range(nproc)],
            )
            collect(q, nproc, "ready", timeout=300)
            time.sleep(2)
            rss = rss_kib(b.pid())
            cpu0 = cpu_s(b.pid())
            time.sleep(window_s)
            cpu = (cpu_s(b.pid()) - cpu0) / window_s * 100
            hold.clear()
            collect(q, nproc, "done")
            join(ps)
            out[f"idle_{c}_kib_per_stream"] = (rss - base) / c
            out[f"idle_{c}_cpu_pct"] = cpu
            out[f"idle_{c}_rss_mib"] = rss / 1024
            out["idle_streams_max"] = c
        finally:
            b.stop()
    out["idle_kib_per_stream"] = max(v for k, v in out.items() if k.endswith("_kib_per_stream"))
    return out


# ---- 5. reconnect storm --------------------------------------------------------------------


def storm(tmp: Path, runs: int, clients: int = 2000, events: int = 300) -> dict[str, Any]:
    b = Bench(tmp, TETHER_HEARTBEAT_S="1")
    times, lost_all, dup_all, cpu, p50s, p90s = [], [], [], [], [], []
    try:
        for _ in range(runs):
            sessions = [b.session() for _ in range(20)]
            nproc = 4
            q = CTX.Queue()
            drop = CTX.Event()
            ps = procs(
                loadgen.subscribers,
                [
                    (
                        b.port,
                        b.token,
                        sessions[i::nproc],
                        clients // 20,
                        b'"status":"completed"',
                        drop,
                        q,
                        False,
                    )
                    for i in range(nproc)
                ],
            )
            collect(q, nproc, "ready", timeout=120)
            tasks = [
                b.start(s, "blast", {"count": events, "steps": events // 5, "pause_s": 0.05})
                for s in sessions
            ]
            time.sleep(2)  # mid-task
            cpu0 = cpu_s(b.pid())
            drop.set()
            dropped = collect(q, nproc, "dropped")
            done = collect(q, nproc, "done", timeout=300)
            cpu.append((cpu_s(b.pid()) - cpu0) * 1000 / clients)
            join(ps)
            for t in tasks:
                b.wait_done(t)
            heads = {s: b.http.get(f"/api/sessions/{s}").json()["head_seq"] for s in sessions}
            head = max(heads.values())
            seqs = [s for d in done for s in d["seqs"]]
            assert len(seqs) == clients, (len(seqs), clients)
            lost = sum(len(set(range(1, head + 1)) - set(s)) for s in seqs)
            dups = sum(len(s) - len(set(s)) for s in seqs)
            reconnected = [t for d in done for t in d["reconnected"]]
            assert len(reconnected) == clients, (len(reconnected), clients)
            t0 = min(dropped)
            times.append(max(reconnected) - t0)
            spread = sorted(t - t0 for t in reconnected)
            p50s.append(spread[len(spread) // 2])
            p90s.append(spread[len(spread) * 9 // 10])
            lost_all.append(lost)
            dup_all.append(dups)
    finally:
        b.stop()
    return {
        "storm_clients": clients,
        "storm_all_live_s": statistics.median(times),
        "storm_live_p50_s": statistics.median(p50s),
        "storm_live_p90_s": statistics.median(p90s),
        "storm_lost": max(lost_all),
        "storm_duplicates": max(dup_all),
        # Server CPU from the drop until the task ended, per client: reconnect plus delivery.
        "storm_server_cpu_ms_per_client": statistics.median(cpu),
    }


# ---- 7. a stream opened on a session of ten thousand tasks ---------------------------------


def _fill_session(b: Bench, sid: str, n: int) -> None:
    """n finished tasks (plus three running ones) written straight into the SQLite file, as
    the log writes them: creating them through agents would take minutes."""
    import sqlite3

    rows = [(f"t_big{i}", sid, "running" if i < 3 else "failed", float(i)) for i in range(n + 3)]
    with sqlite3.connect(b.server.data_dir / "tether.db", timeout=30) as db:
        db.executemany(
            "INSERT INTO tether_tasks (id, session_id, parent_id, agent, input, status, error, "
            "created_at, last_seq) VALUES (?, ?, NULL, 'item', '{\"item\": 1}', ?, "
            '\'{"type":"RuntimeError","message":"boom"}\', ?, 0)',
            rows,
        )
        db.execute("UPDATE tether_sessions SET task_count = ? WHERE id = ?", (len(rows), sid))


async def _open_snapshot(port: int, path: str, headers: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    s = await SSE.open("127.0.0.1", port, path, headers)
    async for f in s.frames():
        if f.startswith(b"event: snapshot"):
            s.close()
            return time.perf_counter() - t0, len(f)
    raise RuntimeError("no snapshot")


async def _probe_while_opening(
    port: int, path: str, headers: dict[str, str], opens: int
) -> tuple[list[float], list[float]]:
    """Open `opens` streams one after another while a second client asks /healthz every 5 ms:
    the probe's latency is how long the server's event loop was held."""
    stop = asyncio.Event()
    lat: list[float] = []

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                await c.get("/healthz")
                lat.append(time.perf_counter() - t0)
                await asyncio.sleep(0.005)

    task = asyncio.create_task(probe())
    took = []
    for _ in range(opens):
        took.append((await _open_snapshot(port, path, headers))[0])
    stop.set()
    await task
    return took, lat


def bigsession(tmp: Path, runs: int, n: int = 10_000, opens: int = 20) -> dict[str, Any]:
    b = Bench(tmp)
    try:
        sid = b.session()
        _fill_session(b, sid, n)
        path = f"/api/sessions/{sid}/stream"
        headers = {"Authorization": f"Bearer {b.token}"}
        _, size = asyncio.run(_open_snapshot(b.port, path, headers))
        opened, probes = [], []
        for _ in range(runs):
            took, lat = asyncio.run(_probe_while_opening(b.port, path, headers, opens))
            opened += took
            probes += lat
    finally:
        b.stop()
    return {
        "bigsession_tasks": n + 3,
        "bigsession_snapshot_kib": size / 1024,
        "bigsession_open_ms_p50": percentile([x * 1000 for x in opened], 50),
        "bigsession_open_ms_p99": percentile([x * 1000 for x in opened], 99),
        "bigsession_probe_ms_p50": percentile([x * 1000 for x in probes], 50),
        "bigsession_probe_ms_max": max(probes) * 1000,
    }


# ---- 6. append -----------------------------------------------------------------------------


def append(tmp: Path, runs: int, n: int = 200_000, tasks: int = 50) -> dict[str, Any]:
    b = Bench(tmp)
    one, many = [], []
    try:
        for _ in range(runs):
            sid = b.session()
            t = b.wait_done(b.start(sid, "blast", {"count": n, "steps": 20}))
            one.append(n / (t["ended_at"] - t["started_at"]))
            sessions = [b.session() for _ in range(tasks)]
            ids = [b.start(s, "blast", {"count": n // tasks, "steps": 4}) for s in sessions]
            done = [b.wait_done(i) for i in ids]
            span = max(d["ended_at"] for d in done) - min(d["started_at"] for d in done)
            many.append(n / span)
    finally:
        b.stop()
    return {
        "append_1_task_eps": statistics.median(one),
        f"append_{tasks}_tasks_eps": statistics.median(many),
    }


def delegation(
    tmp: Path, runs: int, n: int = 100, make: Callable[[Path], Bench] = Bench
) -> dict[str, Any]:
    """Issue 11's measure: a batch of n items delegated one at a time (each a durable child
    workflow: created, run, its step checkpointed, its result read by the parent), timed from
    the parent's start to its end; and 16 at a time."""
    b = make(tmp)
    seq, par = [], []
    try:
        sid = b.session()
        b.wait_done(b.start(sid, "batch", {"items": [0, 1], "delay_s": 0}))  # warm
        for _ in range(runs):
            for parallel, out in ((1, seq), (16, par)):
                t = b.wait_done(
                    b.start(
                        sid, "batch", {"items": list(range(n)), "delay_s": 0, "parallel": parallel}
                    )
                )
                out.append((t["ended_at"] - t["started_at"]) / n * 1000)
    finally:
        b.stop()
    return {
        f"delegation_{n}_sequential_s": statistics.median(seq) * n / 1000,
        "delegation_ms": statistics.median(seq),
        "delegation_16_parallel_ms": statistics.median(par),
    }


CASES: dict[str, Callable[[Path, int], dict[str, Any]]] = {
    "throughput": throughput,
    "limit": lambda tmp, runs: limit(runs),
    "resume": resume,
    "fanout": fanout,
    "idle": lambda tmp, runs: idle_streams(tmp),
    "storm": storm,
    "append": append,
    "bigsession": bigsession,
    "llm": lambda tmp, runs: _model_turns(tmp, runs),
    "web": lambda tmp, runs: _web(tmp, runs),
    "chat": lambda tmp, runs: _chat(tmp, runs),
    "delegation": delegation,
    "distributed": distributed,
    "search": lambda tmp, runs: _search(tmp, runs),
}


def _search(tmp: Path, runs: int) -> dict[str, Any]:
    from benchmarks.search import run

    return run(tmp, runs)


def _web(tmp: Path, runs: int) -> dict[str, Any]:
    from benchmarks.web import long_session

    return long_session(tmp, runs)


def _chat(tmp: Path, runs: int) -> dict[str, Any]:
    from benchmarks.chat import long_conversation

    return long_conversation(tmp, runs)


def _model_turns(tmp: Path, runs: int) -> dict[str, Any]:
    from benchmarks.llm import model_turns

    return model_turns(tmp, runs, per_delta=1) | model_turns(tmp, runs, per_delta=4)


def table(results: dict[str, Any]) -> str:
    rows = []
    for key, value in results.items():
        if isinstance(value, list | dict | str):
            continue
        target = TARGETS.get(key)
        verdict = ""
        if target:
            op, bound = target
            ok = value >= bound if op == "≥" else value <= bound
            verdict = f"{op} {bound:,}  {'met' if ok else 'MISSED'}"
        rows.append((key, f"{value:,.2f}" if isinstance(value, float) else f"{value:,}", verdict))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'measure':<{w0}}  {'value':>{w1}}  target", "-" * (w0 + w1 + 24)]
    lines += [f"{k:<{w0}}  {v:>{w1}}  {t}" for k, v, t in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    args = ap.parse_args()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
    }
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        for name in args.only.split(","):
            t0 = time.time()
            print(f"[{name}] running…", file=sys.stderr, flush=True)
            results.update(CASES[name](Path(tmp), args.runs))
            print(f"[{name}] {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    results["total_s"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{results['date']} · {results['machine']} · {results['total_s']} s\n")
    print(table(results))


if __name__ == "__main__":
    main()
