"""One request, done right: the token of the moment, a refresh and one more try on a 401,
retries while the server cannot be reached (only where retrying is safe), and every error
status raised as its typed exception."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from tether.client.auth import TokenManager, backoff
from tether.client.errors import ConnectionLost, error_for, parse

M = TypeVar("M", bound=BaseModel)

# "any": the request may be sent again after any failure (a read, or a create the server
# dedupes by its Idempotency-Key). "unsent": only when it never left (the connection was
# refused): the server would do it twice.
Retry = Literal["any", "unsent"]
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUS = (502, 503, 504)


class Http:
    """The client's requests. `retry_s`: how long a request is retried while the server
    cannot be reached (a restart takes a few seconds) before ConnectionLost."""

    def __init__(self, client: httpx.AsyncClient, tokens: TokenManager, retry_s: float) -> None:
        self.client = client
        self.tokens = tokens
        self.retry_s = retry_s

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: Retry = "any",
    ) -> httpx.Response:
        deadline = time.monotonic() + self.retry_s
        attempt = 0
        refreshed = False
        while True:
            auth = await self.tokens.header()
            try:
                r = await self.client.request(
                    method, path, json=json, params=params, headers={**auth, **(headers or {})}
                )
            except httpx.TransportError as exc:
                safe = retry == "any" or isinstance(exc, _UNSENT)
                if not safe or time.monotonic() > deadline:
                    raise ConnectionLost(f"{method} {path}: {exc!r}") from exc
                self.tokens.retrying(repr(exc), deadline)
                attempt += 1
                await asyncio.sleep(backoff(attempt, 0.2, 2.0))
                continue
            if r.status_code == 401 and not refreshed:
                # The token ended early (a restart with a new key, a clock jump): refresh
                # once and ask again; a second 401 is the answer.
                await r.aread()
                stale = auth["authorization"].removeprefix("Bearer ")
                if self.tokens.refresh_token is None and not self.tokens.can_renew:
                    raise error_for(r)
                refreshed = True
                await self.tokens.refresh(stale)
                continue
            if r.status_code in _RETRY_STATUS and retry == "any" and time.monotonic() < deadline:
                attempt += 1
                await asyncio.sleep(backoff(attempt, 0.2, 2.0))
                continue
            if r.is_error:
                await r.aread()
                raise error_for(r)
            return r

    async def model(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: Retry = "any",
    ) -> M:
        r = await self.request(method, path, json=json, params=params, headers=headers, retry=retry)
        return parse(model, r.content, f"{method} {path}")
