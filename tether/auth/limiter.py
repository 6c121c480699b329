"""Failed sign-ins per client address, over a sliding window."""

from __future__ import annotations

import math
import time
from collections import deque

from tether.errors import TooManyAttempts


class FailureLimiter:
    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def check(self, key: str) -> None:
        """Raise TooManyAttempts while `key` is over its limit."""
        now = time.monotonic()
        q = self._recent(key, now)
        if len(q) >= self.max_failures:
            retry = max(1, math.ceil(q[0] + self.window_s - now))
            raise TooManyAttempts(
                f"too many failed sign-ins from this address; try again in {retry} s",
                retry_after=retry,
            )

    def fail(self, key: str) -> None:
        now = time.monotonic()
        self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            for k in [k for k, q in self._failures.items() if not q]:
                del self._failures[k]
