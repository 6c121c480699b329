"""Failed sign-ins per client address, over a sliding window.

An attempt is counted as a failure *before* its credentials are checked and forgiven when
they turn out right: a hundred guesses sent at once are a hundred attempts against the
limit, not a hundred checks that each saw an empty counter while argon2 ran.

Memory is bounded: addresses are kept in least-recently-failed order, those whose failures
have all left the window are dropped from the front as new failures arrive (constant work
per request, never a scan of the table), and past `max_keys` the stalest address goes.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from tether.errors import TooManyAttempts


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
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def attempt(self, key: str) -> Attempt:
        """Count an attempt from `key`; raise TooManyAttempts if it is over its limit."""
        now = self._clock()
        self._expire(now)
        q = self._failures.get(key)
        if q is not None:
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.max_failures:
                retry = max(1, math.ceil(q[0] + self.window_s - now))
                raise TooManyAttempts(
                    f"too many failed sign-ins from this address; try again in {retry} s",
                    retry_after=retry,
                )
            self._failures.move_to_end(key)
        else:
            q = self._failures[key] = deque()
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
