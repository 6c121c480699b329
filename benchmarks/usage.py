"""What reading usage costs as it grows: the budget check before every model call, a
session's usage (the chat's header and turns) and a month's `GET /api/usage`, over N calls
of one user in `tether_usage`, on SQLite and on Postgres. Prints a table (medians, p95).

    .venv/bin/python -m benchmarks.usage [--calls 100000] [--sessions 500] [--pg URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tether.db import usage as stored
from tether.db.engine import sync_url
from tether.db.schema import sessions, usage, usage_months
from tether.usage import month_of, month_start

REPEAT = 200


def fill(engine: sa.Engine, calls: int, n_sessions: int) -> None:
    now = time.time()
    with engine.begin() as c:
        c.execute(
            sa.insert(sessions),
            [
                {"id": f"s{i}", "owner": "u1", "title": f"session {i}", "created_at": now}
                for i in range(n_sessions)
            ],
        )
        rows = [
            {
                "session_id": f"s{i % n_sessions}",
                "seq": i + 1,
                "owner": "u1",
                "task_id": f"t{i // 4}",
                "turn_id": f"t{i // 8}",
                "agent": "assistant",
                "model": "anthropic:m" if i % 3 else "openai:h",
                "input_tokens": 1000 + i % 50,
                "output_tokens": 200 + i % 7,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "cost": 0.003,
                "ts": now - (i % 86_400),
            }
            for i in range(calls)
        ]
        for k in range(0, len(rows), 10_000):
            c.execute(sa.insert(usage), rows[k : k + 10_000])


def timed(engine: sa.Engine, fn: Callable[[sa.Connection], Any]) -> tuple[float, float]:
    out = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        with engine.connect() as c, c.begin():
            fn(c)
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.95)]


def run(name: str, url: str, calls: int, n_sessions: int) -> list[tuple[str, str, float, float]]:
    from tether.db.engine import Database

    Database(url).migrate()
    engine = sa.create_engine(sync_url(url))
    fill(engine, calls, n_sessions)
    since = month_start(time.time())
    end = time.time() + 1
    month = month_of(time.time())
    with engine.begin() as c:  # the month's row, as the commit hook keeps it
        c.execute(sa.insert(usage_months).values(owner="u1", month=month, cost=0.003 * calls))
    found = [
        ("budget check", timed(engine, lambda c: stored.spent(c, "s1", "u1", month))),
        ("session usage", timed(engine, lambda c: stored.session_usage(c, "s1"))),
        (
            "month, GET /api/usage",
            timed(engine, lambda c: stored.window_usage(c, "u1", since, end)),
        ),
    ]
    engine.dispose()
    return [(name, what, p50, p95) for what, (p50, p95) in found]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--pg", default="", help="an empty Postgres database's URL")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = run("sqlite", f"sqlite+aiosqlite:///{Path(d) / 'u.db'}", args.calls, args.sessions)
    if args.pg:
        rows += run("postgres", args.pg, args.calls, args.sessions)
    print(f"{args.calls:,} calls of one user in {args.sessions} sessions, {REPEAT} reads each")
    print(f"{'backend':<10} {'read':<24} {'p50 ms':>8} {'p95 ms':>8}")
    for name, what, p50, p95 in rows:
        print(f"{name:<10} {what:<24} {p50:>8.2f} {p95:>8.2f}")


if __name__ == "__main__":
    main()
