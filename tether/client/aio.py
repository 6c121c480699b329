"""`AsyncClient`: Tether's REST API and live stream for asyncio code."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from pydantic import Field, PrivateAttr

from tether.client.auth import SharedRefresh, TokenManager
from tether.client.errors import ConnectionLost, NotTether, WaitTimeout, parse
from tether.client.http import Http
from tether.client.search import AsyncSearch
from tether.client.shares import AsyncShares
from tether.client.stream import EventStream
from tether.client.usage import AsyncUsage
from tether.web.schemas import (
    Approval,
    ApprovalList,
    EventPage,
    Me,
    SessionOut,
    SessionPage,
    TaskNode,
    TaskOut,
    TaskTree,
)

ENDED = frozenset({"completed", "failed", "cancelled", "interrupted"})
_MISSING: Any = object()


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return uuid.uuid4().hex


class AsyncTask(TaskOut):
    """A task as the server last said it was (`status`, `progress`, `result`, …), with
    what can be done with it."""

    _client: AsyncClient = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "client" in context:
            self._client = context["client"]

    async def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> AsyncTask:
        """Wait for the task to end; see `AsyncTasks.wait`."""
        return await self._client.tasks.wait(self.id, timeout=timeout, poll_s=poll_s)

    async def refresh(self) -> AsyncTask:
        return await self._client.tasks.get(self.id)

    async def cancel(self) -> AsyncTask:
        return await self._client.tasks.cancel(self.id)


class AsyncSession(SessionOut):
    """A session (with its task tree when read with `sessions.get`), and what can be done
    in it."""

    tasks: list[TaskNode] | None = Field(None, description="The task tree, when it was read.")
    _client: AsyncClient = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "client" in context:
            self._client = context["client"]

    def stream(self, after: int = 0, *, control: bool = False, **options: Any) -> EventStream:
        """The session's events from after `after`; see `AsyncSessions.stream`."""
        return self._client.sessions.stream(self.id, after=after, control=control, **options)

    async def start(self, agent: str, input: Any = None, **kw: Any) -> AsyncTask:
        return await self._client.tasks.start(self.id, agent, input, **kw)

    async def send(self, text: str, **kw: Any) -> AsyncTask:
        return await self._client.messages.send(self.id, text, **kw)

    async def events(self, after: int = 0, limit: int | None = None) -> EventPage:
        return await self._client.events.page(self.id, after=after, limit=limit)

    async def tree(self) -> TaskTree:
        return await self._client.tasks.tree(self.id)


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._http = client.http

    def _task(self, body: bytes) -> AsyncTask:
        return parse(AsyncTask, body, "a task", client=self._c)


class AsyncSessions(_Resource):
    async def create(self, title: str = "") -> AsyncSession:
        """A new session. Sent again only if the first try never reached the server (the
        server does not dedupe sessions)."""
        r = await self._http.request("POST", "/api/sessions", json={"title": title}, retry="unsent")
        return self._session(r.content)

    async def list(self, limit: int = 50, before: str | None = None) -> SessionPage:
        """A page of your sessions, newest first; pass `page.next` as `before` for more."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return await self._http.model(SessionPage, "GET", "/api/sessions", params=params)

    async def get(self, session_id: str) -> AsyncSession:
        """The session with its task tree."""
        r = await self._http.request("GET", f"/api/sessions/{session_id}")
        return self._session(r.content)

    def stream(
        self, session_id: str, after: int = 0, *, control: bool = False, **options: Any
    ) -> EventStream:
        """`async for item in client.sessions.stream(id, after=seq)`: every event after
        `after`, once each, in seq order, reconnecting for as long as you iterate (see
        `EventStream`). Options: min_delay, max_delay (backoff, seconds), seed."""
        return EventStream(self._http, session_id, after=after, control=control, **options)

    async def export_markdown(self, session_id: str) -> str:
        """The session as it reads: the conversation (the branch shown, sub-agents nested,
        a line per tool call), or its task tree."""
        r = await self._http.request(
            "GET", f"/api/sessions/{session_id}/export", params={"format": "markdown"}
        )
        return r.text

    async def export_json(self, session_id: str) -> dict[str, Any]:
        """The session's log as one JSON document (`{"format": "tether.session", "session",
        "tasks", "events", "files"}`), as the server wrote it: `import_json` takes it back."""
        what = f"GET /api/sessions/{session_id}/export"
        r = await self._http.request(
            "GET", f"/api/sessions/{session_id}/export", params={"format": "json"}
        )
        try:
            doc = json.loads(r.content)
        except ValueError as exc:
            raise NotTether(f"{what}: the answer is not JSON ({r.content[:60]!r}…)") from exc
        if not isinstance(doc, dict) or doc.get("format") != "tether.session":
            raise NotTether(f"{what}: the answer is not a session's export")
        return doc

    async def import_json(self, document: dict[str, Any]) -> AsyncSession:
        """A JSON export brought back as a new session of yours with the same log (new ids).
        Checked whole: a refused document (InvalidInput) leaves nothing behind. Sent again
        only if the first try never reached the server."""
        r = await self._http.request("POST", "/api/sessions/import", json=document, retry="unsent")
        return self._session(r.content)

    def _session(self, body: bytes) -> AsyncSession:
        return parse(AsyncSession, body, "a session", client=self._c)


class AsyncTasks(_Resource):
    async def start(
        self, session_id: str, agent: str, input: Any = None, *, idempotency_key: str | None = None
    ) -> AsyncTask:
        """Start `agent` on `input` in the session. Retried on connection errors with one
        Idempotency-Key: the server starts it once."""
        r = await self._http.request(
            "POST",
            f"/api/sessions/{session_id}/tasks",
            json={"agent": agent, "input": {} if input is None else input},
            headers={"idempotency-key": idempotency_key or new_key()},
        )
        return self._task(r.content)

    async def get(self, task_id: str) -> AsyncTask:
        """The task's status on the server, readable whatever the stream is doing."""
        r = await self._http.request("GET", f"/api/tasks/{task_id}")
        return self._task(r.content)

    async def cancel(self, task_id: str) -> AsyncTask:
        """Cancel the task and everything under it (an ended task is left as it is)."""
        r = await self._http.request("POST", f"/api/tasks/{task_id}/cancel")
        return self._task(r.content)

    async def tree(self, session_id: str, brief: bool = False) -> TaskTree:
        """Every task of the session, nested. `brief`: without results and big inputs."""
        params = {"brief": "true"} if brief else None
        return await self._http.model(
            TaskTree, "GET", f"/api/sessions/{session_id}/tasks", params=params
        )

    async def wait(
        self, task_id: str, timeout: float | None = None, poll_s: float = 1.0
    ) -> AsyncTask:
        """Wait until the task has ended (completed, failed, cancelled or interrupted) and
        return it. It asks the server for the task's status (starting at 0.1 s apart,
        growing to `poll_s`), so it needs no stream; while the server cannot be reached it
        keeps asking. WaitTimeout after `timeout` seconds (the task runs on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = 0.1
        last: str | None = None
        while True:
            try:
                task = await self.get(task_id)
                if task.status in ENDED:
                    return task
                last = task.status
            except ConnectionLost:
                last = last or "unknown (server unreachable)"
            if deadline is not None and time.monotonic() + interval > deadline:
                raise WaitTimeout(f"task {task_id} is still {last} after {timeout} s")
            await asyncio.sleep(interval)
            interval = min(poll_s, interval * 1.5)


class AsyncMessages(_Resource):
    async def send(
        self,
        session_id: str,
        text: str,
        *,
        agent: str | None = None,
        parent: str | None = _MISSING,
        idempotency_key: str | None = None,
    ) -> AsyncTask:
        """Say something in the session's conversation: the reply is a task (a turn) whose
        events stream into the session's log. `parent`: the message it answers after
        (None: a new first message; left out: the end of the branch shown)."""
        body: dict[str, Any] = {"text": text}
        if agent is not None:
            body["agent"] = agent
        if parent is not _MISSING:
            body["parent"] = parent
        r = await self._http.request(
            "POST",
            f"/api/sessions/{session_id}/messages",
            json=body,
            headers={"idempotency-key": idempotency_key or new_key()},
        )
        return self._task(r.content)


class AsyncApprovals(_Resource):
    async def list(self, task_id: str) -> list[Approval]:
        """What the task asked a person, and what was answered."""
        found = await self._http.model(ApprovalList, "GET", f"/api/tasks/{task_id}/approvals")
        return found.approvals

    async def answer(
        self, task_id: str, approval_id: str, decision: str, note: str | None = None
    ) -> Approval:
        """ "approve" or "deny", once (a second answer is a Conflict). Sent again only if
        the first try never reached the server."""
        return await self._http.model(
            Approval,
            "POST",
            f"/api/tasks/{task_id}/approvals/{approval_id}",
            json={"decision": decision, "note": note},
            retry="unsent",
        )


class AsyncEvents(_Resource):
    async def page(self, session_id: str, after: int = 0, limit: int | None = None) -> EventPage:
        """The events after `after`, in seq order; ask again from `next_after` while
        `more`. A Gone (410) when `after` is older than what the server keeps."""
        params: dict[str, Any] = {"after": after}
        if limit is not None:
            params["limit"] = limit
        return await self._http.model(
            EventPage, "GET", f"/api/sessions/{session_id}/events", params=params
        )


class AsyncClient:
    """Tether for asyncio code.

    :param base_url: the server, e.g. "http://127.0.0.1:8765".
    :param secret: sign in with the bootstrap secret;
    :param username: with `password`, as a user;
    :param token: or with an access token as it is (no refresh);
    :param refresh_token: or with a refresh token saved from an earlier sign-in.
    :param timeout: seconds for each request (a stream's reads are watched by heartbeats).
    :param retry_s: how long a request is retried while the server cannot be reached.
    :param transport: an httpx transport (tests, proxies).
    :param shared_refresh: where the refresh token is kept when other processes share
        this sign-in (`tether login`'s file): each refresh starts from, and saves, the
        newest one.

    The sign-in happens on the first request (or `await client.sign_in()`); the access
    token is refreshed at ~75 % of its life, and after a 401.
    """

    def __init__(
        self,
        base_url: str,
        *,
        secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 30.0,
        retry_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        shared_refresh: SharedRefresh | None = None,
    ) -> None:
        self._httpx = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )
        self.tokens = TokenManager(
            self._httpx,
            secret=secret,
            username=username,
            password=password,
            token=token,
            refresh_token=refresh_token,
            retry_s=retry_s,
            shared=shared_refresh,
        )
        self.http = Http(self._httpx, self.tokens, retry_s)
        self.sessions = AsyncSessions(self)
        self.tasks = AsyncTasks(self)
        self.messages = AsyncMessages(self)
        self.approvals = AsyncApprovals(self)
        self.events = AsyncEvents(self)
        self.search = AsyncSearch(self.http)
        self.shares = AsyncShares(self.http)
        self.usage = AsyncUsage(self.http)

    async def sign_in(self) -> Me:
        """Sign in now (otherwise the first request does) and say who you are."""
        if self.tokens.token is None:
            await self.tokens.refresh()
        return await self.me()

    async def me(self) -> Me:
        return await self.http.model(Me, "GET", "/api/me")

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token (it rotates): save it to sign in later without a
        password (`refresh_token=`)."""
        return self.tokens.refresh_token

    async def sign_out(self) -> None:
        """End this sign-in on the server, then close."""
        await self.tokens.sign_out()
        await self.aclose()

    async def aclose(self) -> None:
        self.tokens.close()
        await self._httpx.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
