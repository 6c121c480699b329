"""Signing in and staying signed in: the access token in memory, the rotating refresh token
that the server sets as a cookie, kept here (a script has no browser to keep it).

The rules are the browser client's (tether/web/static/client.js): refresh at ~75 % of the
access token's life, and at once on a 401; one refresh in flight; a refresh the server
refuses means signed out, unless the client can sign in again with what it was given (the
bootstrap secret, or a user name and password).

Several processes can share one sign-in (the terminal client's commands, each its own
process): given a `SharedRefresh`, a refresh takes its lock, starts from the refresh token
it holds (another process may have traded the one this process had), and saves the new one
before letting go, as the browser's tabs do with a Web Lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import httpx

from tether.client.errors import (
    APIError,
    ConnectionLost,
    ServerError,
    Unauthorized,
    error_for,
    parse,
)
from tether.web.schemas import Problem, SignedIn, UserOut

COOKIE = "tether_refresh"
REFRESH_AT = 0.75  # of the access token's life
SKEW_S = 1.0  # a token this close to its end is not sent


class SharedRefresh(Protocol):
    """Where processes sharing one sign-in keep its refresh token (it rotates: a token
    traded by one process and then traded again by another, after the server's grace,
    ends the sign-in)."""

    def lock(self) -> AbstractAsyncContextManager[None]:
        """Held by one process at a time, across the load, the trade and the save."""
        ...

    def load(self) -> str | None: ...

    def save(self, refresh_token: str) -> None: ...


def refresh_cookie(response: httpx.Response) -> str | None:
    """The refresh token a sign-in or refresh set (read from Set-Cookie: the cookie is for
    the path /auth, which a cookie jar would send; this sends it explicitly)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() == COOKIE:
            value = rest.split(";", 1)[0].strip()
            return value or None
    return None


class TokenManager:
    """The credentials of one client.

    :param http: the client's httpx client (base URL set).
    :param secret: the bootstrap secret (signs in as the owner).
    :param username: with `password`, a user's sign-in.
    :param token: an access token to use as it is (no refresh: when it ends, a 401).
    :param refresh_token: a refresh token saved from an earlier sign-in (`refresh_token`).
    :param shared: the refresh token's store, when other processes use the same sign-in.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        refresh_token: str | None = None,
        retry_s: float = 30.0,
        shared: SharedRefresh | None = None,
    ) -> None:
        if shared is not None and refresh_token is None:
            refresh_token = shared.load()
        if (username is None) != (password is None):
            raise ValueError("a password sign-in needs both username and password")
        if not (secret or username or token or refresh_token):
            raise ValueError(
                "sign in with secret=, username= and password=, token= or refresh_token="
            )
        self._http = http
        self._secret = secret
        self._username = username
        self._password = password
        self._retry_s = retry_s
        self.token: str | None = token
        self.refresh_token = refresh_token
        # monotonic seconds; a given token's life is unknown: used until a 401 says it ended
        self.expires_at = float("inf") if token else 0.0
        self.issued_at = time.monotonic()
        self.user: UserOut | None = None
        self.refreshes = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._shared = shared
        # Told (reason, seconds left) each time a request is about to be tried again
        # because the server could not be reached: a command line can say it is waiting.
        self.on_retry: Callable[[str, float], None] | None = None

    def retrying(self, reason: str, deadline: float) -> None:
        if self.on_retry is not None:
            self.on_retry(reason, max(0.0, deadline - time.monotonic()))

    @property
    def can_renew(self) -> bool:
        """Whether a refused refresh can be answered by signing in again."""
        return bool(self._secret or self._username)

    async def header(self, patient: bool = True) -> dict[str, str]:
        """The Authorization header, refreshing (or signing in) first if the token is
        missing or near its end. `patient=False`: one try at that (a stream has its own
        backoff, and says so in its state)."""
        if self.token is None or time.monotonic() > self.expires_at - SKEW_S:
            await self.refresh(self.token, patient=patient)
        assert self.token is not None
        return {"authorization": f"Bearer {self.token}"}

    async def sign_in(self, patient: bool = True) -> UserOut:
        """POST /auth with the secret or the password."""
        if self._secret:
            body: dict[str, str] = {"secret": self._secret}
        elif self._username and self._password is not None:
            body = {"username": self._username, "password": self._password}
        else:
            raise ValueError("this client has no secret or password to sign in with")
        await self._take(await self._post("/auth", patient, json=body))
        assert self.user is not None
        return self.user

    async def refresh(self, stale: str | None = None, patient: bool = True) -> None:
        """Get a new access token, unless another call already replaced `stale` (one
        refresh in flight: the refresh token rotates, and a reused one ends the sign-in).
        While the server cannot be reached it tries again for `retry_s` (`patient`) or
        not at all, waiting between tries without holding the lock: a stream's own
        one-try refresh is never stuck behind a patient one."""
        deadline = time.monotonic() + (self._retry_s if patient else 0.0)
        attempt = 0
        while True:
            try:
                async with self._lock:
                    if self.token is not None and self.token != stale and self._fresh():
                        return
                    await self._refresh_once()
                    return
            except (ConnectionLost, ServerError) as exc:  # unreachable, or a proxy's 502
                attempt += 1
                if time.monotonic() > deadline:
                    raise
                self.retrying(str(exc), deadline)
                await asyncio.sleep(backoff(attempt, 0.2, 2.0))

    async def _refresh_once(self) -> None:
        if self._shared is None:
            await self._trade()
            return
        async with self._shared.lock():
            stored = self._shared.load()
            if stored is not None:
                self.refresh_token = stored  # the newest, whoever traded for it
            await self._trade()
            if self.refresh_token is not None and self.refresh_token != stored:
                self._shared.save(self.refresh_token)

    async def _trade(self) -> None:
        if self.refresh_token is None:
            if not self.can_renew:
                raise Unauthorized(
                    Problem(
                        title="Unauthorized",
                        status=401,
                        detail="the access token ended, and there is no refresh token",
                    )
                )
            await self.sign_in(patient=False)
            return
        try:
            r = await self._post(
                "/auth/refresh", False, headers={"cookie": f"{COOKIE}={self.refresh_token}"}
            )
        except Unauthorized:
            if not self.can_renew:
                self.token = None
                raise
            await self.sign_in(patient=False)  # the sign-in ended (idle, revoked): start anew
            return
        await self._take(r)
        self.refreshes += 1

    async def sign_out(self) -> None:
        """End this sign-in on the server (its refresh token stops working, its streams
        close). Unreachable, the tokens are forgotten all the same."""
        self.close()
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if self.refresh_token:
            headers["cookie"] = f"{COOKIE}={self.refresh_token}"
        with contextlib.suppress(httpx.TransportError):
            await self._http.post("/auth/logout", headers=headers)
        self.token = None
        self.refresh_token = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fresh(self) -> bool:
        ttl = self.expires_at - self.issued_at
        return self.expires_at - time.monotonic() > ttl * (1 - REFRESH_AT) + SKEW_S / 2

    async def _post(self, path: str, patient: bool = True, **kw: Any) -> httpx.Response:
        """POST to an auth route, retried while the server cannot be reached (a refresh
        token just rotated still works for a few seconds, so a lost answer can be asked
        again)."""
        deadline = time.monotonic() + (self._retry_s if patient else 0.0)
        attempt = 0
        while True:
            try:
                r = await self._http.post(path, **kw)
            except httpx.TransportError as exc:
                attempt += 1
                if time.monotonic() > deadline:
                    raise ConnectionLost(f"POST {path}: {exc!r}") from exc
                self.retrying(repr(exc), deadline)
                await asyncio.sleep(backoff(attempt, 0.2, 2.0))
                continue
            if r.status_code in (502, 503, 504) and time.monotonic() < deadline:
                attempt += 1
                await asyncio.sleep(backoff(attempt, 0.2, 2.0))
                continue
            if r.is_error:
                await r.aread()
                raise error_for(r)
            return r

    async def _take(self, r: httpx.Response) -> None:
        body = parse(SignedIn, await r.aread(), "signing in")
        now = time.monotonic()
        self.token = body.access_token
        self.issued_at = now
        self.expires_at = now + body.expires_in
        self.user = body.user
        self.refresh_token = refresh_cookie(r) or self.refresh_token
        self._schedule(now + body.expires_in * REFRESH_AT)

    def _schedule(self, at: float) -> None:
        """Refresh at `at` (monotonic) in the background: a token never ages out under a
        long wait or an idle stream."""
        self.close()
        if self.refresh_token is None and not self.can_renew:
            return

        async def later() -> None:
            await asyncio.sleep(max(0.25, at - time.monotonic()))
            self._timer = None
            # Failures are met again, and raised, by the next request that needs a token.
            with contextlib.suppress(APIError, ConnectionLost):
                await self.refresh(self.token)

        self._timer = asyncio.get_running_loop().create_task(later())


def backoff(attempt: int, low: float = 0.5, high: float = 20.0, rand: float | None = None) -> float:
    """Full jitter: uniform in [0, min(high, low * 2**attempt)] (a thousand clients dropped
    at once do not come back at once)."""
    r = random.random() if rand is None else rand
    # (the exponent capped: a stream retries forever, and 2.0**1024 overflows)
    return r * min(high, low * 2.0 ** min(attempt, 40))
