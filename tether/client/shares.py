"""Read-only share links to a session: made (the token is shown once), listed, revoked."""

from __future__ import annotations

from typing import Any

from tether.client.http import Http
from tether.client.loop import Loop
from tether.web.schemas import ShareList, ShareMade, ShareOut


class AsyncShares:
    def __init__(self, http: Http) -> None:
        self._http = http

    async def create(
        self, session_id: str, *, expires_in_s: int | None = None, label: str = ""
    ) -> ShareMade:
        """A link that reads the session (its conversation, events and tasks) and nothing
        else, until `expires_in_s` seconds from now (None: until revoked). Its `token` is
        in this answer only: `Client(url, token=made.token)` reads as its holder. Sent again
        only if the first try never reached the server (a retry would make two links)."""
        body: dict[str, Any] = {"label": label}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return await self._http.model(
            ShareMade, "POST", f"/api/sessions/{session_id}/shares", json=body, retry="unsent"
        )

    async def list(self, session_id: str) -> list[ShareOut]:
        """The session's links that were not revoked, expired ones too (`expired`)."""
        found = await self._http.model(ShareList, "GET", f"/api/sessions/{session_id}/shares")
        return found.shares

    async def revoke(self, share_id: str) -> None:
        """The link reads nothing from now on, and its open streams end. Revoking it again
        changes nothing (so it is retried); an unknown link, or another's: NotFound."""
        await self._http.request("DELETE", f"/api/shares/{share_id}")


class Shares:
    """`AsyncShares` for code without asyncio: each call runs on the client's loop."""

    def __init__(self, runner: Loop, aio: AsyncShares) -> None:
        self._run = runner.run
        self._aio = aio

    def create(
        self, session_id: str, *, expires_in_s: int | None = None, label: str = ""
    ) -> ShareMade:
        """A read-only link to the session; see `AsyncShares.create`."""
        return self._run(self._aio.create(session_id, expires_in_s=expires_in_s, label=label))

    def list(self, session_id: str) -> list[ShareOut]:
        """The session's links that were not revoked."""
        return self._run(self._aio.list(session_id))

    def revoke(self, share_id: str) -> None:
        """The link reads nothing from now on."""
        self._run(self._aio.revoke(share_id))
