"""Search across your sessions: a page at a time, or every result, page after page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from tether.client.http import Http
from tether.client.loop import Loop
from tether.web.schemas import SearchPage, SearchResult


class AsyncSearch:
    def __init__(self, http: Http) -> None:
        self._http = http

    async def page(self, q: str, limit: int | None = None, cursor: str | None = None) -> SearchPage:
        """The sessions' titles, messages, replies, tool results and tasks that hold every
        word of `q` (`"a phrase"`, `word*`), best first; pass `page.next` as `cursor` for
        more. Each result's `snippet` is plain text in pieces: the odd-numbered ones
        matched."""
        params: dict[str, Any] = {"q": q}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return await self._http.model(SearchPage, "GET", "/api/search", params=params)

    async def all(self, q: str, limit: int | None = None) -> AsyncIterator[SearchResult]:
        """`async for hit in client.search.all(q)`: every result, asking for the next page
        (of `limit`) as the last one runs out. The server ranks 1,000 deep at most."""
        cursor: str | None = None
        while True:
            found = await self.page(q, limit, cursor)
            for hit in found.results:
                yield hit
            if found.next is None:
                return
            cursor = found.next


class Search:
    """`AsyncSearch` for code without asyncio: each call runs on the client's loop."""

    def __init__(self, runner: Loop, aio: AsyncSearch) -> None:
        self._run = runner.run
        self._aio = aio

    def page(self, q: str, limit: int | None = None, cursor: str | None = None) -> SearchPage:
        """A page of results, best first; see `AsyncSearch.page`."""
        return self._run(self._aio.page(q, limit, cursor))

    def all(self, q: str, limit: int | None = None) -> Iterator[SearchResult]:
        """`for hit in client.search.all(q)`: every result, a page at a time."""
        cursor: str | None = None
        while True:
            found = self.page(q, limit, cursor)
            yield from found.results
            if found.next is None:
                return
            cursor = found.next
