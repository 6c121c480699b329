"""`Client`: the same API for code without asyncio. It runs an `AsyncClient` on an event
loop in a thread of its own, so both share one implementation of the rules (resume,
refresh, retries); a Ctrl-C while a call waits cancels that call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import Field, PrivateAttr

from tether.client.aio import _MISSING, AsyncClient, AsyncSession, AsyncTask
from tether.client.auth import SharedRefresh
from tether.client.loop import Loop
from tether.client.search import Search
from tether.client.shares import Shares
from tether.client.stream import ConnectionState, EventStream, Snapshot, StreamItem
from tether.client.usage import Usage
from tether.web.schemas import (
    Approval,
    EventPage,
    Me,
    SessionOut,
    SessionPage,
    TaskNode,
    TaskOut,
    TaskTree,
)


class Task(TaskOut):
    """A task as the server last said it was, with what can be done with it."""

    _client: Client = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "client" in context:
            self._client = context["client"]

    def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> Task:
        """Wait for the task to end, asking the server for its status (no stream needed);
        see `AsyncTasks.wait`."""
        return self._client.tasks.wait(self.id, timeout=timeout, poll_s=poll_s)

    def refresh(self) -> Task:
        return self._client.tasks.get(self.id)

    def cancel(self) -> Task:
        return self._client.tasks.cancel(self.id)


class Session(SessionOut):
    """A session (with its task tree when read with `sessions.get`), and what can be done
    in it."""

    tasks: list[TaskNode] | None = Field(None, description="The task tree, when it was read.")
    _client: Client = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "client" in context:
            self._client = context["client"]

    def stream(self, after: int = 0, *, control: bool = False, **options: Any) -> Stream:
        """`for item in session.stream(after=seq)`: see `Stream`."""
        return self._client.sessions.stream(self.id, after=after, control=control, **options)

    def start(self, agent: str, input: Any = None, **kw: Any) -> Task:
        return self._client.tasks.start(self.id, agent, input, **kw)

    def send(self, text: str, **kw: Any) -> Task:
        return self._client.messages.send(self.id, text, **kw)

    def events(self, after: int = 0, limit: int | None = None) -> EventPage:
        return self._client.events.page(self.id, after=after, limit=limit)

    def tree(self) -> TaskTree:
        return self._client.tasks.tree(self.id)


class Stream:
    """`for item in stream`: the session's events (`EventOut`) in seq order, each once,
    reconnecting for as long as you iterate, and a `Reset` when the server no longer had
    the events after the cursor (see `EventStream`). `state`, `cursor`, `snapshot`,
    `reconnects` and `resets` can be read from any thread."""

    def __init__(self, loop: Loop, stream: EventStream) -> None:
        self._loop = loop
        self.aio = stream

    def __iter__(self) -> Iterator[StreamItem]:
        return self

    def __next__(self) -> StreamItem:
        try:
            return self._loop.run(self.aio.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self.aio.aclose())

    def poke(self) -> None:
        """Reconnect now instead of after the backoff."""
        self._loop.loop.call_soon_threadsafe(self.aio.poke)

    @property
    def state(self) -> ConnectionState:
        return self.aio.state

    @property
    def cursor(self) -> int:
        return self.aio.cursor

    @property
    def snapshot(self) -> Snapshot | None:
        return self.aio.snapshot

    @property
    def reconnects(self) -> int:
        return self.aio.reconnects

    @property
    def resets(self) -> int:
        return self.aio.resets


class _Resource:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._run = client.runner.run
        self._aio = client.aio

    def _task(self, task: AsyncTask) -> Task:
        return Task.model_validate(task, from_attributes=True, context={"client": self._c})

    def _session(self, s: AsyncSession) -> Session:
        return Session.model_validate(s, from_attributes=True, context={"client": self._c})


class Sessions(_Resource):
    def create(self, title: str = "") -> Session:
        """A new session (sent again only if the first try never reached the server)."""
        return self._session(self._run(self._aio.sessions.create(title)))

    def list(self, limit: int = 50, before: str | None = None) -> SessionPage:
        """A page of your sessions, newest first; pass `page.next` as `before` for more."""
        return self._run(self._aio.sessions.list(limit, before))

    def get(self, session_id: str) -> Session:
        """The session with its task tree."""
        return self._session(self._run(self._aio.sessions.get(session_id)))

    def stream(
        self, session_id: str, after: int = 0, *, control: bool = False, **options: Any
    ) -> Stream:
        """Every event of the session after `after`, once each, in seq order; see `Stream`."""
        return Stream(
            self._c.runner, self._aio.sessions.stream(session_id, after, control=control, **options)
        )

    def export_markdown(self, session_id: str) -> str:
        """The session as it reads, in Markdown."""
        return self._run(self._aio.sessions.export_markdown(session_id))

    def export_json(self, session_id: str) -> dict[str, Any]:
        """The session's log as one JSON document, which `import_json` takes back."""
        return self._run(self._aio.sessions.export_json(session_id))

    def import_json(self, document: dict[str, Any]) -> Session:
        """A JSON export brought back as a new session with the same log (new ids)."""
        return self._session(self._run(self._aio.sessions.import_json(document)))


class Tasks(_Resource):
    def start(
        self, session_id: str, agent: str, input: Any = None, *, idempotency_key: str | None = None
    ) -> Task:
        """Start `agent` on `input` (retried with one Idempotency-Key: started once)."""
        return self._task(
            self._run(
                self._aio.tasks.start(session_id, agent, input, idempotency_key=idempotency_key)
            )
        )

    def get(self, task_id: str) -> Task:
        """The task's status on the server."""
        return self._task(self._run(self._aio.tasks.get(task_id)))

    def cancel(self, task_id: str) -> Task:
        """Cancel the task and everything under it."""
        return self._task(self._run(self._aio.tasks.cancel(task_id)))

    def tree(self, session_id: str, brief: bool = False) -> TaskTree:
        """Every task of the session, nested."""
        return self._run(self._aio.tasks.tree(session_id, brief))

    def wait(self, task_id: str, timeout: float | None = None, poll_s: float = 1.0) -> Task:
        """Wait until the task has ended, by asking for its status; see `AsyncTasks.wait`."""
        return self._task(self._run(self._aio.tasks.wait(task_id, timeout, poll_s)))


class Messages(_Resource):
    def send(
        self,
        session_id: str,
        text: str,
        *,
        agent: str | None = None,
        parent: str | None = _MISSING,
        idempotency_key: str | None = None,
    ) -> Task:
        """Say something in the session's conversation; the reply is a task (a turn)."""
        return self._task(
            self._run(
                self._aio.messages.send(
                    session_id, text, agent=agent, parent=parent, idempotency_key=idempotency_key
                )
            )
        )


class Approvals(_Resource):
    def list(self, task_id: str) -> list[Approval]:
        """What the task asked a person, and what was answered."""
        return self._run(self._aio.approvals.list(task_id))

    def answer(
        self, task_id: str, approval_id: str, decision: str, note: str | None = None
    ) -> Approval:
        """ "approve" or "deny", once (a second answer is a Conflict)."""
        return self._run(self._aio.approvals.answer(task_id, approval_id, decision, note))


class Events(_Resource):
    def page(self, session_id: str, after: int = 0, limit: int | None = None) -> EventPage:
        """The events after `after`, in seq order; ask again from `next_after` while `more`."""
        return self._run(self._aio.events.page(session_id, after, limit))


class Client:
    """Tether for code without asyncio; the parameters are `AsyncClient`'s.

    >>> with Client("http://127.0.0.1:8765", secret="...") as tether:
    ...     session = tether.sessions.create("demo")
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
        self.aio = AsyncClient(
            base_url,
            secret=secret,
            username=username,
            password=password,
            token=token,
            refresh_token=refresh_token,
            timeout=timeout,
            retry_s=retry_s,
            transport=transport,
            shared_refresh=shared_refresh,
        )
        self.runner = Loop()  # the loop thread the calls run on
        self.sessions = Sessions(self)
        self.tasks = Tasks(self)
        self.messages = Messages(self)
        self.approvals = Approvals(self)
        self.events = Events(self)
        self.search = Search(self.runner, self.aio.search)
        self.shares = Shares(self.runner, self.aio.shares)
        self.usage = Usage(self.runner, self.aio.usage)

    def sign_in(self) -> Me:
        """Sign in now (otherwise the first request does) and say who you are."""
        return self.runner.run(self.aio.sign_in())

    def me(self) -> Me:
        return self.runner.run(self.aio.me())

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token (it rotates): save it to sign in later."""
        return self.aio.refresh_token

    def sign_out(self) -> None:
        """End this sign-in on the server, then close."""
        self.runner.run(self.aio.tokens.sign_out())
        self.close()

    def close(self) -> None:
        if not self.runner.loop.is_closed():
            self.runner.run(self.aio.aclose())
            self.runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
