"""The sign-in limiter under concurrent and spoofed guesses, sign-out closing streams at
once, pruning of ended sign-ins, and paged session lists."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.helpers.server import SECRET, Api, add_user, sse_frames, wait_until
from tests.test_auth import Browser
from tether.auth.limiter import FailureLimiter
from tether.errors import TooManyAttempts

# -- item 12: the limiter -------------------------------------------------------------------


def test_concurrent_wrong_passwords_are_limited_like_sequential_ones(make_server: Any) -> None:
    server = make_server(TETHER_AUTH_MAX_FAILURES="10")
    add_user(server, "alice", "alice-password")

    def guess(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            return c.post("/auth", json={"username": "alice", "password": f"wrong-{i}"}).status_code

    with ThreadPoolExecutor(25) as pool:
        codes = list(pool.map(guess, range(100)))
    assert codes.count(401) <= 10 and codes.count(429) >= 90, codes


def test_a_spoofed_forwarded_for_does_not_reset_the_count(make_server: Any) -> None:
    server = make_server(TETHER_AUTH_MAX_FAILURES="5")
    with httpx.Client(base_url=server.url, timeout=10) as c:
        codes = [
            c.post(
                "/auth", json={"secret": "guess"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
            ).status_code
            for i in range(12)
        ]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes


def test_a_configured_proxy_is_believed(make_server: Any) -> None:
    server = make_server(TETHER_AUTH_MAX_FAILURES="3", TETHER_TRUSTED_PROXIES='["127.0.0.1"]')
    with httpx.Client(base_url=server.url, timeout=10) as c:

        def attempt(client_ip: str, secret: str = "guess") -> int:
            return c.post(
                "/auth", json={"secret": secret}, headers={"X-Forwarded-For": client_ip}
            ).status_code

        assert [attempt("203.0.113.7") for _ in range(4)] == [401, 401, 401, 429]
        assert attempt("198.51.100.1") == 401  # another client behind the same proxy
        assert attempt("198.51.100.1", SECRET) == 200


def test_the_limiter_forgets_and_stays_small() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, max_keys=1000, clock=lambda: now[0])
    for i in range(40_000):  # a spray of spoofed addresses
        limiter.attempt(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}").failed()
        assert len(limiter) <= 1000
    now[0] += 61
    limiter.attempt("192.0.2.1").failed()
    assert len(limiter) == 1  # everything else left the window
    for _ in range(3):
        limiter.attempt("192.0.2.9").failed()
    try:
        limiter.attempt("192.0.2.9")
        raise AssertionError("a fourth attempt in the window must be refused")
    except TooManyAttempts as exc:
        assert exc.extra["retry_after"] == 60
    for _ in range(10):
        limiter.attempt("192.0.2.10")  # right answers are not counted
    for _ in range(3):
        limiter.attempt("192.0.2.10").failed()
    # An IPv6 host cannot step around the limit by taking a new address from its /64.
    for i in range(3):
        limiter.attempt(f"2001:db8:0:1::{i + 1}").failed()
    with pytest.raises(TooManyAttempts):
        limiter.attempt("2001:db8:0:1:ffff::9")
    limiter.attempt("2001:db8:0:2::1")  # another /64 is another client


async def test_slow_checks_take_turns_and_only_failures_count() -> None:
    """Checks that await (argon2): forty right ones at once all pass, at most `max` in
    flight; forty wrong ones make `max` failures and the rest are refused."""
    limiter = FailureLimiter(4, 60)
    flying = [0]
    most = [0]

    async def check(right: bool) -> str:
        try:
            async with limiter.turn("192.0.2.7") as attempt:
                flying[0] += 1
                most[0] = max(most[0], flying[0])
                await asyncio.sleep(0)  # the check's await (a thread's argon2)
                await asyncio.sleep(0)
                flying[0] -= 1
                if not right:
                    attempt.failed()
                return "ok" if right else "wrong"
        except TooManyAttempts:
            return "limited"

    assert await asyncio.gather(*(check(True) for _ in range(40))) == ["ok"] * 40
    assert most[0] == 4
    outcome = await asyncio.gather(*(check(False) for _ in range(40)))
    assert outcome.count("wrong") == 4 and outcome.count("limited") == 36
    assert await check(True) == "limited"


# -- item 14: sign-out, pruning, pages ------------------------------------------------------


def test_sign_out_closes_its_streams_at_once(make_server: Any) -> None:
    server = make_server(TETHER_HEARTBEAT_S="60")  # the next heartbeat is a minute away
    tab = Browser(server)
    other = Browser(server)
    sid = tab.post("/api/sessions", json={}).json()["id"]
    frames: dict[str, list[Any]] = {"tab": [], "other": []}
    opened = threading.Barrier(3)

    def follow(name: str, who: Browser) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            with c.stream("GET", f"/api/sessions/{sid}/stream", headers=who.headers) as r:
                for i, f in enumerate(sse_frames(r)):
                    frames[name].append(f)
                    if i == 0:
                        opened.wait()

    threads = {
        n: threading.Thread(target=follow, args=(n, b)) for n, b in (("tab", tab), ("other", other))
    }
    for t in threads.values():
        t.start()
    opened.wait(10)
    assert tab.post("/auth/logout").status_code == 204
    threads["tab"].join(5)  # a heartbeat would take 60 s
    assert not threads["tab"].is_alive(), "the signed-out stream is still open"
    assert frames["tab"][-1].event == "auth" and "signed out" in frames["tab"][-1].data["reason"]
    assert threads["other"].is_alive()  # another sign-in's stream is untouched
    other.post("/auth/logout")
    threads["other"].join(5)


def test_ended_sign_ins_and_their_tokens_are_pruned(make_server: Any) -> None:
    server = make_server(TETHER_SESSION_LIFETIME_S="3", TETHER_AUTH_PRUNE_S="0.2")
    tabs = [Browser(server) for _ in range(3)]
    for tab in tabs:
        assert tab.refresh().status_code == 200

    def rows() -> tuple[int, int]:
        with sqlite3.connect(server.data_dir / "tether.db") as db:
            return (
                db.execute("SELECT count(*) FROM tether_auth_sessions").fetchone()[0],
                db.execute("SELECT count(*) FROM tether_refresh_tokens").fetchone()[0],
            )

    assert rows()[0] >= 3
    wait_until(lambda: rows() == (0, 0), timeout=10, what="ended sign-ins to be pruned")
    assert Browser(server).refresh().status_code == 200  # signing in still works


def test_sessions_come_in_pages(api: Api) -> None:
    c = httpx.Client(base_url=api.c.base_url, headers={"x-web-bootstrap-secret": SECRET})
    mine = set()
    for i in range(7):
        mine.add(api.session(f"page {i}"))
    seen: list[str] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if before:
            params["before"] = before
        r = c.get("/api/sessions", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["sessions"]) <= 3
        seen += [s["id"] for s in page["sessions"]]
        before = page["next"]
        if before is None:
            break
    assert mine <= set(seen) and len(seen) == len(set(seen))
    created = [
        s["created_at"] for s in c.get("/api/sessions", params={"limit": 200}).json()["sessions"]
    ]
    assert created == sorted(created, reverse=True)
    for bad in ({"before": "yesterday"}, {"before": "nan:s_x"}, {"limit": "0"}, {"limit": "x"}):
        r = c.get("/api/sessions", params=bad)
        assert (
            r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"
        )


# -- issue 26 item 11: only failures count ----------------------------------------------------


def test_the_right_secret_is_never_limited_under_concurrency_on_postgres(make_server: Any) -> None:
    """A right secret waiting on the database is not a failure: forty at once all pass (the
    limiter counted pending checks as failures, and the eleventh concurrent one got 429).
    Wrong ones are still limited, concurrent or not, and then the right one is refused too
    (a 200 among the 429s would tell a guesser it had guessed right)."""
    from tests.helpers.pg import fresh_database, shared_env

    with fresh_database() as url:
        server = make_server(TETHER_AUTH_MAX_FAILURES="10", **shared_env(url))
        sid = Api(server.client()).session()
        start = threading.Barrier(40)

        def right(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                start.wait(30)
                if i % 3 == 0:
                    return c.post("/auth", json={"secret": SECRET}).status_code
                headers = {"x-web-bootstrap-secret": SECRET}
                if i % 3 == 1:
                    return c.get("/api/sessions", headers=headers).status_code
                r = c.post(
                    f"/api/sessions/{sid}/tasks",
                    json={"agent": "one_item", "input": {"item": i}},
                    headers=headers,
                )
                return r.status_code

        for _ in range(2):
            with ThreadPoolExecutor(40) as pool:
                codes = list(pool.map(right, range(40)))
            assert 429 not in codes and set(codes) <= {200, 201}, codes
            start.reset()

        def wrong(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                start.wait(30)
                return c.post("/auth", json={"secret": f"guess-{i}"}).status_code

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(wrong, range(40)))
        assert codes.count(401) <= 10 and codes.count(429) >= 30, codes
        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.post("/auth", json={"secret": SECRET}).status_code == 429
            r = c.get("/api/me", headers={"x-web-bootstrap-secret": SECRET})
            assert r.status_code == 429
