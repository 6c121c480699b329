"""The Python SDK (tether.client) against real servers: the REST methods, sign-in and
refresh, and each error as its typed exception carrying the server's problem+json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import tether.client as sdk
from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.imports import loaded, server_modules
from tests.helpers.models import model_server
from tests.helpers.server import SECRET, Server, add_user, free_port, wait_until
from tether.client import AsyncClient, Client


def test_the_sdk_imports_none_of_the_server() -> None:
    mods = loaded("tether.client")
    assert server_modules("tether.client") == []
    ours = sorted(m for m in mods if m.startswith("tether.") and not m.startswith("tether.client"))
    # The wire's models, and what a message says of its files (no workspace, no database).
    assert ours == ["tether.attachment_refs", "tether.web", "tether.web.schemas"], ours


def test_the_public_front_is_sorted_and_complete() -> None:
    assert sdk.__all__ == sorted(sdk.__all__)
    public = {n for n in dir(sdk) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(sdk, n)).__name__ == "module"}
    assert public - modules == set(sdk.__all__)


def test_the_rest_methods_return_the_servers_models(shared_server: Server) -> None:
    with Client(shared_server.url, secret=SECRET) as c:
        me = c.sign_in()
        assert me.user.name and c.refresh_token
        s = c.sessions.create("sdk rest")
        assert isinstance(s, sdk.Session) and s.title == "sdk rest" and s.head_seq == 0
        task = s.start("batch", {"items": [1, 2], "delay_s": 0.05})
        assert isinstance(task, sdk.Task) and task.session_id == s.id and task.agent == "batch"
        done = task.wait(timeout=60)
        assert done.status == "completed" and done.id == task.id
        # The same Idempotency-Key starts nothing new: the first task is the answer.
        once = c.tasks.start(s.id, "one_item", {"item": "x"}, idempotency_key="k-1")
        again = c.tasks.start(s.id, "one_item", {"item": "x"}, idempotency_key="k-1")
        assert again.id == once.id
        got = c.sessions.get(s.id)
        assert got.tasks is not None and {t.id for t in got.tasks} == {task.id, once.id}
        tree = c.tasks.tree(s.id)
        assert [t.id for t in tree.tasks] == [t.id for t in got.tasks]
        assert len(tree.tasks[0].children) == 2
        assert c.tasks.get(once.id).wait(timeout=60).status == "completed"
        cancelled = c.tasks.start(s.id, "hold", {"hold_s": 60}).cancel()
        assert cancelled.status == "cancelled"
        listed = c.sessions.list(limit=200)
        assert s.id in {x.id for x in listed.sessions}
        page = c.events.page(s.id, after=0, limit=5)
        assert [e.seq for e in page.events] == [1, 2, 3, 4, 5] and page.more
        rest = c.events.page(s.id, after=page.next_after)
        assert rest.events[0].seq == 6 and rest.events[-1].seq == c.sessions.get(s.id).head_seq


async def test_the_async_client_does_the_same(shared_server: Server) -> None:
    async with AsyncClient(shared_server.url, secret=SECRET) as c:
        s = await c.sessions.create("sdk async")
        task = await s.start("batch", {"items": [1, 2, 3], "delay_s": 0.05})
        seen: list[int] = []
        async with s.stream() as stream:
            async for item in stream:
                assert isinstance(item, sdk.EventOut)
                seen.append(item.seq)
                if item.task_id == task.id and item.data.get("status") == "completed":
                    break
        assert (await task.wait(timeout=30)).status == "completed"
        log = (await s.events()).events
        assert seen == [e.seq for e in log]


def test_sign_in_with_a_password_a_token_or_a_saved_refresh_token(make_server: Any) -> None:
    server = make_server()
    add_user(server, "ann", "correct horse battery")
    with Client(server.url, username="ann", password="correct horse battery") as c:
        assert c.sign_in().user.name == "ann"
        token, saved = c.aio.tokens.token, c.refresh_token
        assert token and saved
        c.sessions.create("ann's")
    # The access token as it is: it works until it ends.
    with Client(server.url, token=token) as c:
        assert [x.title for x in c.sessions.list().sessions] == ["ann's"]
    # A saved refresh token signs in again (the terminal client's `tether login`), and it
    # rotates: the client holds the new one.
    with Client(server.url, refresh_token=saved) as c:
        assert c.sign_in().user.name == "ann"
        assert c.refresh_token and c.refresh_token != saved
    # A token that the server refuses (401) is refreshed, and the request asked again.
    with Client(server.url, token="stale-token", refresh_token=c.refresh_token) as c2:
        assert [x.title for x in c2.sessions.list().sessions] == ["ann's"]
        assert c2.aio.tokens.refreshes == 1
    # A wrong password, a bad token.
    with Client(server.url, username="ann", password="wrong") as c:
        with pytest.raises(sdk.Unauthorized) as e:
            c.sign_in()
        assert e.value.status == 401 and "password" in e.value.detail
    with Client(server.url, token="not-a-token") as c:
        with pytest.raises(sdk.Unauthorized) as e:
            c.sessions.list()
        assert "invalid" in e.value.detail


def test_a_token_ttl_of_2_s_never_shows_a_401(make_server: Any) -> None:
    server = make_server(TETHER_ACCESS_TTL_S="2")
    statuses: list[tuple[str, int]] = []

    async def record(request: httpx.Request, r: httpx.Response) -> None:
        statuses.append((request.url.path, r.status_code))

    transport = _Hooked(record)
    with Client(server.url, secret=SECRET, transport=transport) as c:
        s = c.sessions.create()
        task = s.start("batch", {"items": list(range(12)), "delay_s": 0.5})
        done = task.wait(poll_s=0.2)  # ~6 s: three tokens' lives, polled every 0.2 s
        assert done.status == "completed"
        assert c.aio.tokens.refreshes >= 2
    refreshes = [p for p, _ in statuses if p == "/auth/refresh"]
    assert len(refreshes) >= 2
    assert [x for x in statuses if x[1] == 401] == []


class _Hooked(httpx.AsyncHTTPTransport):
    def __init__(self, hook: Any) -> None:
        super().__init__()
        self.hook = hook

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        await self.hook(request, response)
        return response


def _problem(e: pytest.ExceptionInfo[sdk.APIError], status: int) -> sdk.APIError:
    err = e.value
    assert err.status == status and err.problem.status == status
    assert err.title and err.detail and err.type
    assert str(status) in str(err)
    return err


def test_every_method_raises_not_found_with_the_problem(shared_server: Server) -> None:
    with Client(shared_server.url, secret=SECRET) as c:
        s = c.sessions.create()
        calls = {
            "sessions.get": lambda: c.sessions.get("s_missing"),
            "tasks.start": lambda: c.tasks.start("s_missing", "one_item", {"item": 1}),
            "tasks.get": lambda: c.tasks.get("t_missing"),
            "tasks.cancel": lambda: c.tasks.cancel("t_missing"),
            "tasks.tree": lambda: c.tasks.tree("s_missing"),
            "tasks.wait": lambda: c.tasks.wait("t_missing"),
            "messages.send": lambda: c.messages.send("s_missing", "hello"),
            "approvals.list": lambda: c.approvals.list("t_missing"),
            "approvals.answer": lambda: c.approvals.answer("t_missing", "a_x", "approve"),
            "events.page": lambda: c.events.page("s_missing"),
            "stream": lambda: next(iter(c.sessions.stream("s_missing"))),
        }
        for name, call in calls.items():
            with pytest.raises(sdk.NotFound) as e:
                call()
            err = _problem(e, 404)
            assert err.headers["content-type"] == "application/problem+json", name
        # 422: an unknown agent, with the failing fields.
        with pytest.raises(sdk.InvalidInput) as bad:
            s.start("no_such_agent", {})
        _problem(bad, 422)
        with pytest.raises(sdk.InvalidInput) as bad:
            s.start("batch", {"items": "not a list"})
        assert _problem(bad, 422).errors  # type: ignore[attr-defined]
        # 410: a cursor beyond the head; the problem carries the snapshot to rebuild from.
        with pytest.raises(sdk.Gone) as gone:
            s.events(after=10**9)
        assert _problem(gone, 410).snapshot["head_seq"] == 0  # type: ignore[attr-defined,index]
        # 400: a limit the server refuses.
        with pytest.raises((sdk.BadRequest, sdk.InvalidInput)) as e4:
            c.events.page(s.id, limit=10**9)
        assert e4.value.status in (400, 422)


def test_limits_quota_size_and_server_errors_are_typed(make_server: Any, tmp_path: Path) -> None:
    server = make_server(
        TETHER_MAX_SESSIONS_PER_USER="1",
        TETHER_MAX_BODY_BYTES="4000",
        TETHER_MAX_STORAGE_BYTES_PER_USER="1",
    )
    with Client(server.url, secret=SECRET) as c:
        s = c.sessions.create()
        with pytest.raises(sdk.TooManyRequests) as e:
            c.sessions.create()
        _problem(e, 429)
        with pytest.raises(sdk.PayloadTooLarge) as big:
            s.start("one_item", {"item": "x" * 10_000})
        _problem(big, 413)
        # The first task's events use the 1-byte quota up: the next start is refused.
        assert s.start("one_item", {"item": 1}).wait(timeout=60).status == "completed"
        with pytest.raises(sdk.QuotaExceeded) as full:
            s.start("one_item", {"item": 2})
        _problem(full, 507)
    # A proxy's 502 page (not problem+json) is a ServerError all the same, after retries.
    bad_gateway = _answering(502, b"<html>bad gateway</html>")
    with Client(bad_gateway, token="x", retry_s=0.5) as c:
        with pytest.raises(sdk.ServerError) as e5:
            c.sessions.list()
        assert e5.value.status == 502 and "bad gateway" in e5.value.detail
    # Nobody there: ConnectionLost once the retries are spent.
    with Client(f"http://127.0.0.1:{free_port()}", token="x", retry_s=0.5) as c:
        with pytest.raises(sdk.ConnectionLost):
            c.sessions.list()
    assert isinstance(sdk.ConnectionLost("x"), sdk.TetherClientError)


def _answering(status: int, body: bytes) -> str:
    """A tiny HTTP server (a thread) answering every request with `status` and `body`."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_wait_times_out_and_the_task_runs_on(shared_server: Server) -> None:
    with Client(shared_server.url, secret=SECRET) as c:
        task = c.sessions.create().start("hold", {"hold_s": 60})
        with pytest.raises(sdk.WaitTimeout):
            task.wait(timeout=0.5)
        assert task.refresh().status in ("queued", "running")
        task.cancel()


def test_an_approval_is_answered_once(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server = model_server(make_server, fake_llm, tmp_path)
    with Client(server.url, secret=SECRET) as c:
        s = c.sessions.create()
        turn = s.send("write notes.txt: draft")
        pending = wait_until(
            lambda: [a for a in c.approvals.list(turn.id) if a.status == "pending"],
            what="the approval request",
        )
        answered = c.approvals.answer(turn.id, pending[0].id, "approve", note="ok")
        assert answered.status == "approved" and answered.note == "ok"
        with pytest.raises(sdk.Conflict) as e:
            c.approvals.answer(turn.id, pending[0].id, "deny")
        assert _problem(e, 409).problem.model_extra["approval"]["status"] == "approved"  # type: ignore[index]
        assert turn.wait(timeout=60).status == "completed"


def test_backoff_is_full_jitter_from_0_5_to_20_s_and_never_overflows() -> None:
    from tether.client.auth import backoff

    assert backoff(1, rand=1.0) == 1.0
    assert backoff(10, rand=1.0) == 20.0
    assert backoff(3, rand=0.0) == 0.0
    assert backoff(5000, rand=1.0) == 20.0  # a stream that retried for days
    assert all(0 <= backoff(a) <= 20 for a in range(100))
