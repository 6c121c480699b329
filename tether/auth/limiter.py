"""Failed sign-ins per client address, over a sliding window.

Only failures count. A check that needs no wait (the bootstrap secret: one constant-time
comparison) is judged and, if wrong, counted in one step with no await between, so a burst
of concurrent guesses sees each failure as it happens. A check that must wait (a password:
argon2 in a thread) takes a turn: an address has at most as many checks in flight as it has
failures left, and the others wait for theirs rather than being refused. A hundred guesses
sent at once still make at most `max_failures` failures; forty right answers sent at once
all pass (a pending check counted as a failure answered 429 to right secrets).

Memory is bounded: addresses are kept in least-recently-failed order, those whose failures
have all left the window are dropped from the front as new failures arrive (constant work
per request, never a scan of the table), and past `max_keys` the stalest address goes. An
IPv6 client is counted by its /64, the block one subscriber holds: otherwise one host could
try from a new address each time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.schema import auth_failures
from tether.errors import TooManyAttempts


def limiter_key(address: str) -> str:
    """What failures are counted against: the address, or for IPv6 its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def too_many(retry: int) -> TooManyAttempts:
    return TooManyAttempts(
        f"too many failed sign-ins from this address; try again in {retry} s", retry_after=retry
    )


class Attempt:
    """One sign-in attempt from an address under its limit: `failed()` if it was wrong."""

    __slots__ = ("_limiter", "_key")

    def __init__(self, limiter: FailureLimiter, key: str) -> None:
        self._limiter = limiter
        self._key = key

    def failed(self) -> None:
        self._limiter.record_failure(self._key)


class FailureLimiter:
    def __init__(
        self,
        max_failures: int,
        window_s: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        # Per key, the times of its failures in the window, oldest first (at most max_failures).
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        # Per key, its checks in flight (`turn`); waiters are woken when one ends.
        self._busy: dict[str, int] = {}
        self._ended: asyncio.Condition | None = None

    def __len__(self) -> int:
        return len(self._failures)

    def attempt(self, address: str) -> Attempt:
        """An attempt from `address`; TooManyAttempts if its failures reached the limit.
        Nothing is counted until `failed()`: call it with no await in between."""
        return Attempt(self, self._check(limiter_key(address)))

    @asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[Attempt]:
        """An attempt for a check that awaits: while this address's failures plus its checks
        in flight would pass the limit, wait for one of them to end (not a failure of its
        own); TooManyAttempts once its failures alone reach it."""
        key = limiter_key(address)
        if self._ended is None:
            self._ended = asyncio.Condition()
        while True:
            self._check(key)
            q = self._failures.get(key, ())
            if len(q) + self._busy.get(key, 0) < self.max_failures:
                break
            async with self._ended:
                await self._ended.wait()
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            yield Attempt(self, key)
        finally:
            left = self._busy[key] - 1
            if left:
                self._busy[key] = left
            else:
                del self._busy[key]
            async with self._ended:
                self._ended.notify_all()

    def _check(self, key: str) -> str:
        now = self._clock()
        self._expire(now)
        q = self._failures.get(key)
        if q is not None:
            q[:] = [t for t in q if t > now - self.window_s]
            if len(q) >= self.max_failures:
                retry = max(1, math.ceil(q[0] + self.window_s - now))
                raise too_many(retry)
        return key

    def record_failure(self, key: str) -> None:
        now = self._clock()
        q = self._failures.get(key)
        if q is not None:
            self._failures.move_to_end(key)
        else:
            q = self._failures[key] = []
            if len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        q.append(now)
        del q[: -self.max_failures]

    def _expire(self, now: float) -> None:
        # Front = least recently failed: once its newest failure has left the window, so has
        # everything it holds. Stop at the first address that still counts.
        while self._failures:
            key, q = next(iter(self._failures.items()))
            if q and q[-1] > now - self.window_s:
                return
            del self._failures[key]


class SharedFailures:
    """Failed sign-ins recorded in the database, so every process on it counts what the
    others saw (Postgres; on SQLite there is one process and the memory limiter is all).
    Each process still counts its failures in memory as they happen, so a burst of
    concurrent guesses is limited per process at once and across processes as the failures
    are written: at most `max_failures` per process can be in flight over the shared limit.
    Only failures are written: a right answer leaves no row."""

    def __init__(self, db: Database, max_failures: int, window_s: float) -> None:
        self.db, self.max_failures, self.window_s = db, max_failures, window_s

    async def check(self, address: str) -> None:
        key, now = limiter_key(address), time.time()
        q = sa.select(sa.func.count(), sa.func.min(auth_failures.c.at)).where(
            auth_failures.c.key == key, auth_failures.c.at > now - self.window_s
        )
        n, oldest = await self.db.read(lambda c: c.execute(q).one())
        if n >= self.max_failures:
            retry = max(1, math.ceil(oldest + self.window_s - now))
            raise too_many(retry)

    async def failed(self, address: str) -> None:
        row = {"key": limiter_key(address), "at": time.time()}
        await self.db.write(lambda c: c.execute(sa.insert(auth_failures), row))

    async def prune(self) -> int:
        cut = time.time() - self.window_s
        q = sa.delete(auth_failures).where(auth_failures.c.at <= cut)
        return int(await self.db.write(lambda c: c.execute(q).rowcount))
