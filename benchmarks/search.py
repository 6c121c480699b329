"""Search over 100,000 messages (issue 30): p50/p95 of a query, on SQLite and on Postgres.

    PYTHONPATH=. .venv/bin/python -m benchmarks --only search --runs 1
    PYTHONPATH=. .venv/bin/python -m benchmarks.search [--messages 100000] [--pg URL]

Two users' sessions (50 messages each, alternating users) are written through the log, as a
server writes them: every message a chat turn's `task.created`, every fifth a tool result,
with words drawn from a 20,000-word vocabulary by Zipf's law (the commonest word is in
nearly every message, as "the" is). Then each query of a mix is asked as the route asks it
(the page of 20 ranked rows and their snippets, on a reader thread), as each user in turn:
the commonest word, a rare one, two words, a phrase, a prefix. Timed in process, without
HTTP: what the index costs, not the web stack's constant.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from itertools import accumulate
from pathlib import Path
from typing import Any

from tether import search
from tether.db.engine import Database
from tether.db.store import Store
from tether.events.log import Append, EventLog
from tether.model import dumps

PER_SESSION = 50
USERS = ("ana", "bo")
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "he", "ji"]


def vocabulary(n: int, rnd: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rnd.choices(SYLLABLES, k=rnd.randint(2, 4))))
    return sorted(words, key=lambda w: (len(w), w))  # short words the commonest


def queries(vocab: list[str]) -> dict[str, str]:
    return {
        "common word": vocab[0],
        "rare word": vocab[15_000],
        "two words": f"{vocab[40]} {vocab[900]}",
        "phrase": f'"{vocab[0]} {vocab[1]}"',
        "prefix": vocab[200][:3] + "*",
    }


async def fill(db: Database, messages: int, rnd: random.Random, vocab: list[str]) -> float:
    """Write the sessions through the log with search's commit hook; returns seconds."""
    store = Store(db)
    log = EventLog(db)
    log.add_commit_hook(store.search.on_commit)
    log.start()
    cum = list(accumulate(1 / r for r in range(1, len(vocab) + 1)))
    t0 = time.perf_counter()
    try:
        for s in range(messages // PER_SESSION):
            owner = USERS[s % 2]
            title = " ".join(rnd.choices(vocab, cum_weights=cum, k=4))
            sid = (await store.create_session(owner, title)).id
            batch = []
            for m in range(PER_SESSION):
                text = " ".join(rnd.choices(vocab, cum_weights=cum, k=rnd.randint(10, 60)))
                tid = f"t{s}-{m}"
                inp = {"text": text, "parent": None}
                row = {"id": tid, "session_id": sid, "parent_id": None, "agent": "assistant",
                       "input": dumps(inp), "status": "completed", "created_at": 0.0}  # fmt: skip
                data = dumps({"agent": "assistant", "input": inp, "parent_id": None})
                batch.append(Append(sid, tid, None, "task.created", data, new_task=row))
                if m % 5 == 0:
                    content = {"messageId": f"r{tid}", "toolCallId": "c", "content": text[::-1]}
                    batch.append(Append(sid, None, None, "TOOL_CALL_RESULT", dumps(content)))
            await log.append(*batch)
    finally:
        await log.stop()
    return time.perf_counter() - t0


async def ask(db: Database, store: Store, q: str, owner: str) -> float:
    terms = search.parse(q)
    t0 = time.perf_counter()
    hits = await db.read(lambda c: store.search.find(c, owner, terms, 21, 0))
    [search.snippet(h.body, terms) for h in hits[:20]]
    return time.perf_counter() - t0


async def measure(url: str, messages: int, rounds: int) -> dict[str, Any]:
    rnd = random.Random(30)
    vocab = vocabulary(20_000, rnd)
    db = Database(url)
    db.migrate()
    store = Store(db)
    try:
        took = await fill(db, messages, rnd, vocab)
        if not db.sqlite:
            # What autovacuum does after a bulk load (a minute later, at its own pace): with
            # no statistics the planner may look the term up once per session of the user.
            await db.write(lambda c: c.exec_driver_sql("ANALYZE"))
        mix = queries(vocab)
        times: dict[str, list[float]] = {name: [] for name in mix}
        for q in mix.values():  # warm: the first read of each query's pages
            await ask(db, store, q, USERS[0])
        for i in range(rounds):
            for name, q in mix.items():
                times[name].append(await ask(db, store, q, USERS[i % 2]))
    finally:
        await db.close()
    every = [t for ts in times.values() for t in ts]
    out: dict[str, Any] = {"fill_s": took}
    for name, ts in times.items():
        out[f"{name} p50_ms"] = statistics.median(ts) * 1000
        out[f"{name} p95_ms"] = pct(ts, 95) * 1000
    out["p50_ms"] = statistics.median(every) * 1000
    out["p95_ms"] = pct(every, 95) * 1000
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def run(tmp: Path, runs: int, messages: int = 100_000, pg: str | None = None) -> dict[str, Any]:
    """Both backends: the figures for the benchmark table (`search_{backend}_p95_ms`)."""
    from tests.helpers.pg import fresh_database

    rounds = 40 * max(1, runs)
    results: dict[str, Any] = {}
    lite = asyncio.run(measure(f"sqlite+aiosqlite:///{tmp / 'search.db'}", messages, rounds))
    print(lite, flush=True)
    if pg:
        big = asyncio.run(measure(pg, messages, rounds))
    else:
        with fresh_database() as url:
            big = asyncio.run(measure(url, messages, rounds))
    for backend, res in (("sqlite", lite), ("postgres", big)):
        print(f"\nsearch on {backend}, {messages:,} messages (fill {res['fill_s']:.1f} s)")
        print(f"{'query':<14} {'p50 ms':>8} {'p95 ms':>8}")
        for name in queries(["x"] * 20_001):
            print(f"{name:<14} {res[name + ' p50_ms']:>8.2f} {res[name + ' p95_ms']:>8.2f}")
        results[f"search_{backend}_p50_ms"] = res["p50_ms"]
        results[f"search_{backend}_p95_ms"] = res["p95_ms"]
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--pg", default=None, help="a Postgres URL (default: a fresh database)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-search-") as tmp:
        print(run(Path(tmp), args.runs, args.messages, args.pg))


if __name__ == "__main__":
    main()
