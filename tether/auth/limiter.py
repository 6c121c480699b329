"""Failed sign-ins per client address, over a sliding window.

An attempt is counted as a failure *before* its credentials are checked and forgiven when
they turn out right: a hundred guesses sent at once are a hundred attempts against the
limit, not a hundred checks that each saw an empty counter while argon2 ran.

Memory is bounded: addresses are kept in least-recently-failed order, those whose failures
have all left the window are dropped from the front as new failures arrive (constant work
per request, never a scan of the table), and past `max_keys` the stalest address goes. An
IPv6 client is counted by its /64, the block one subscriber holds: otherwise one host could
try from a new address each time.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

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
    """One sign-in attempt, counted as failed until `succeeded()` says otherwise."""

    __slots__ = ("_limiter", "_key", "_at")

    def __init__(self, limiter: FailureLimiter, key: str, at: float) -> None:
        self._limiter = limiter
        self._key = key
        self._at = at

    def succeeded(self) -> None:
        self._limiter._forgive(self._key, self._at)


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

    def __len__(self) -> int:
        return len(self._failures)

    def attempt(self, address: str) -> Attempt:
        """Count an attempt from `address`; raise TooManyAttempts if it is over its limit."""
        key = limiter_key(address)
        now = self._clock()
        self._expire(now)
        q = self._failures.get(key)
        if q is not None:
            q[:] = [t for t in q if t > now - self.window_s]
            if len(q) >= self.max_failures:
                retry = max(1, math.ceil(q[0] + self.window_s - now))
                raise too_many(retry)
            self._failures.move_to_end(key)
        else:
            q = self._failures[key] = []
            if len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        q.append(now)
        return Attempt(self, key, now)

    def _forgive(self, key: str, at: float) -> None:
        q = self._failures.get(key)
        if q is not None:
            try:
                q.remove(at)
            except ValueError:
                pass

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
    Each process still counts attempts in memory before their check, so a burst of
    concurrent guesses is limited per process at once and across processes as the failures
    are written: at most `max_failures` per process can be in flight over the shared limit."""

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
