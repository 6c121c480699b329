"""Streaming model turns: N concurrent turns, each streaming tokens at a fixed rate from the
local model server (Anthropic wire format, in its own process), each followed by an SSE
client on loopback.

Every token the model server sends is the wall-clock time it was sent, so a client can tell,
for each token, how long it took from the model's socket through Tether (coalesced into a
delta event, committed to the log, fanned out) to the client: delta→client latency. Also
measured: events committed per second, and CPU per 1,000 tokens streamed: the server's own
process (the API's event loop) and its model processes (`model_processes`, where the
provider streams are parsed), apart and together.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.sse import SSE, frame_seq
from tests.helpers.server import ROOT, free_port, wait_until


def _follow_turns(port: int, token: str, sessions: list[str], out: Any) -> None:
    """One process: a stream per session, until its turn completes. Reports latencies."""

    async def one(sid: str) -> dict[str, Any]:
        s = await SSE.open(
            "127.0.0.1", port, f"/api/sessions/{sid}/stream", {"Authorization": f"Bearer {token}"}
        )
        out.put(("ready", sid))
        lat: list[float] = []
        sent: list[float] = []  # the tokens' stamps, as they came (each once, in order)
        steady: list[float] = []  # tokens received 2 s or more after the turn's first
        deltas = 0
        first = last = 0.0
        async for f in s.frames():
            if frame_seq(f) is None:
                continue
            if b"TEXT_MESSAGE_CONTENT" in f:
                now = time.time()
                data = json.loads(f[f.index(b"data: ") + 6 :])["data"]
                deltas += 1
                first, last = first or now, now
                stamps = [float(w) for w in data["delta"].split()]
                got = [now - w for w in stamps]
                sent.extend(stamps)
                lat.extend(got)
                if now - first >= 2:
                    steady.extend(got)
            elif b'"status":"completed"' in f or b'"status":"failed"' in f:
                break
        s.close()
        in_order = all(a <= b for a, b in zip(sent, sent[1:], strict=False))
        return {
            "lat": lat,
            "steady": steady,
            "deltas": deltas,
            "first": first,
            "last": last,
            "in_order": in_order,
            "distinct": len(set(sent)),  # a delta's stamp: one per delta sent
        }

    async def main() -> None:
        res = await asyncio.gather(*(one(sid) for sid in sessions))
        out.put(("done", res))

    asyncio.run(main())


def model_turns(
    tmp: Path,
    runs: int,
    turns: int = 50,
    tokens_per_s: float = 100,
    seconds: float = 10,
    per_delta: int = 1,
) -> dict[str, Any]:
    """`per_delta` tokens arrive in each of the provider's deltas: 1 is the worst case (every
    token its own SSE event); providers usually send a few tokens per delta."""
    from benchmarks.__main__ import CTX, Bench, collect, cpu_s, join, percentile, procs

    fake_port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_llm", str(fake_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: _up(fake_port), timeout=30, what="the model server")
    httpx.post(
        f"http://127.0.0.1:{fake_port}/_control", json={"tokens_per_s": tokens_per_s / per_delta}
    )
    agents = tmp / "bench-agents.toml"
    agents.write_text(
        f'[agents.assistant]\nmodel = "anthropic:bench"\nbase_url = "http://127.0.0.1:{fake_port}"\n'
        'api_key_env = "TETHER_BENCH_KEY"\n'
    )
    b = Bench(tmp, TETHER_AGENTS_FILE=str(agents), TETHER_BENCH_KEY="sk-bench")
    deltas = int(tokens_per_s * seconds / per_delta)
    eps, p50, p99, cpu, tok_rate, fake_cpu, steady99 = [], [], [], [], [], [], []
    api_k, procs_k = [], []  # CPU seconds per 1,000 tokens: the API process, model processes
    try:
        # Warm: the model processes start with the first calls, a second one when the first
        # is busy (seconds of imports each), and it takes calls once the first has several:
        # twenty turns at once start both and end once both are ready.
        warm = [b.session() for _ in range(20)]
        for t in [_say(b, s, "words 3") for s in warm]:
            assert b.wait_done(t)["status"] == "completed"
        for _ in range(runs):
            sids = [b.session() for _ in range(turns)]
            q = CTX.Queue()
            half = turns // 2
            ps = procs(
                _follow_turns,
                [(b.port, b.token, sids[:half], q), (b.port, b.token, sids[half:], q)],
            )
            collect(q, turns, "ready")
            mcpu0 = model_procs_cpu_s(b.pid())
            cpu0, fcpu0, t0 = cpu_s(b.pid()), cpu_s(fake.pid), time.time()
            heads0 = sum(b.http.get(f"/api/sessions/{s}").json()["head_seq"] for s in sids)
            with ThreadPoolExecutor(turns) as pool:  # every turn asked for at once
                text = f"stamped {deltas} by {per_delta}"
                tasks = list(pool.map(lambda s, t=text: _say(b, s, t), sids))
            results = [
                r for part in collect(q, 2, "done", timeout=seconds * 10 + 120) for r in part
            ]
            t1, cpu1, fcpu1 = time.time(), cpu_s(b.pid()), cpu_s(fake.pid)
            mcpu1 = model_procs_cpu_s(b.pid())
            window = max(r["last"] for r in results) - min(r["first"] for r in results)
            join(ps)
            for t in tasks:
                assert b.wait_done(t)["status"] == "completed"
            heads = sum(b.http.get(f"/api/sessions/{s}").json()["head_seq"] for s in sids)
            lat = [x for r in results for x in r["lat"]]
            sent = deltas * per_delta * turns
            assert len(lat) == sent, f"{len(lat)} tokens seen, {sent} sent"
            assert all(r["in_order"] for r in results), "a turn's tokens came out of order"
            assert all(r["distinct"] == deltas for r in results), "a delta lost or repeated"
            api_k.append((cpu1 - cpu0) / sent * 1000)
            # A model process that started during the run counts from zero (its start too).
            procs_k.append(sum(c - mcpu0.get(pid, 0.0) for pid, c in mcpu1.items()) / sent * 1000)
            eps.append((heads - heads0) / (t1 - t0))
            tok_rate.append(len(lat) / window)
            p50.append(percentile(lat, 50) * 1000)
            p99.append(percentile(lat, 99) * 1000)
            steady99.append(percentile([x for r in results for x in r["steady"]], 99) * 1000)
            cpu.append((cpu1 - cpu0) / (t1 - t0) * 100 / turns)
            fake_cpu.append((fcpu1 - fcpu0) / (t1 - t0) * 100)
    finally:
        b.stop()
        fake.kill()
        fake.wait(10)
    k = f"llm{per_delta}"
    return {
        f"{k}_turns": turns,
        f"{k}_tokens_per_s_per_turn": tokens_per_s,
        f"{k}_tokens_per_delta": per_delta,
        f"{k}_events_committed_per_s": statistics.median(eps),
        f"{k}_tokens_delivered_per_s": statistics.median(tok_rate),
        f"{k}_token_latency_p50_ms": statistics.median(p50),
        f"{k}_token_latency_p99_ms": statistics.median(p99),
        f"{k}_token_latency_p99_after_2s_ms": statistics.median(steady99),
        f"{k}_server_cpu_pct_per_turn": statistics.median(cpu),
        f"{k}_api_cpu_s_per_1000_tokens": statistics.median(api_k),
        f"{k}_model_procs_cpu_s_per_1000_tokens": statistics.median(procs_k),
        f"{k}_total_cpu_s_per_1000_tokens": statistics.median(
            [a + m for a, m in zip(api_k, procs_k, strict=True)]
        ),
        f"{k}_model_server_cpu_pct": statistics.median(fake_cpu),
        f"{k}_runs": {
            "eps": eps,
            "p50_ms": p50,
            "p99_ms": p99,
            "p99_after_2s_ms": steady99,
            "cpu_pct_per_turn": cpu,
            "api_cpu_s_per_1000_tokens": api_k,
            "model_procs_cpu_s_per_1000_tokens": procs_k,
        },
    }


def model_procs_cpu_s(server_pid: int) -> dict[int, float]:
    """The CPU seconds of each of the server's model processes (its children that run
    `tether.llm.model_process`), by pid."""
    from benchmarks.__main__ import cpu_s

    out: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
            if int(stat.rsplit(")", 1)[1].split()[1]) == server_pid and (
                b"tether.llm.model_process" in cmd
            ):
                out[int(d.name)] = cpu_s(int(d.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return out


def _say(b: Any, sid: str, text: str) -> str:
    r = httpx.post(
        f"{b.server.url}/api/sessions/{sid}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {b.token}"},
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["id"])


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_requests", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
