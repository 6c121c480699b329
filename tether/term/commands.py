"""The terminal client's commands, added to `tether` beside `serve`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Annotated

import httpx
import typer
from pydantic import BaseModel
from rich.table import Table

from tether.client import APIError, AsyncClient, ConnectionLost, NotTether, TetherClientError
from tether.term import follow as following
from tether.term.chat import Chat
from tether.term.common import (
    Exit,
    JsonOption,
    ServerOption,
    emit,
    err,
    fail,
    out,
    parse_input,
    run,
    safe,
)
from tether.term.credentials import Credentials, Unreadable, normal_url

EXIT_CODES = (
    "Exit codes: 0 done (a task completed), 1 the task failed or was interrupted, 2 bad "
    "input, 3 the task was cancelled, 4 not signed in (`tether login URL`), 5 the server "
    "refused (not found, not yours, a conflict), 6 the server could not be reached, "
    "130 detached with Ctrl-C (the task keeps running)."
)

DETACH_HINT = "Ctrl-C detaches (the work goes on)"

Server = Annotated[str | None, ServerOption]
Json = Annotated[bool, JsonOption]


def _read_secret(stdin: bool, what: str) -> str:
    if stdin:
        value = sys.stdin.readline().rstrip("\n")
    else:
        value = typer.prompt(what, hide_input=True, err=True)
    if not value:
        fail(Exit.USAGE, f"no {what.lower()} given")
    return value


def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://127.0.0.1:8765.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Sign in as this user (a password).")
    ] = None,
    stdin: Annotated[
        bool,
        typer.Option("--stdin", help="Read the secret (or password) from standard input."),
    ] = False,
) -> None:
    """Sign in to a server and keep the sign-in for the other commands.

    Give the URL `tether serve` printed (the secret rides in it), or a plain URL and the
    bootstrap secret when asked (or in TETHER_SECRET); --user signs in with a password. The
    sign-in is kept as a refresh token in a file only you can read."""
    url, _, fragment = url.partition("#")
    given = fragment.removeprefix("secret=") if fragment.startswith("secret=") else None
    url = normal_url(url)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or not parsed.host or " " in url:
        fail(Exit.USAGE, f"not a server's URL: {url!r} (e.g. http://127.0.0.1:8765)")
    creds = Credentials()
    try:
        creds.check()
    except Unreadable as exc:
        fail(Exit.SIGNED_OUT, str(exc))
    if user is not None:
        password = os.environ.get("TETHER_PASSWORD") or _read_secret(stdin, "Password")
        client = AsyncClient(url, username=user, password=password, retry_s=5.0)
    else:
        secret = given or os.environ.get("TETHER_SECRET") or _read_secret(stdin, "Bootstrap secret")
        client = AsyncClient(url, secret=secret, retry_s=5.0)

    async def sign_in() -> tuple[str, str | None]:
        async with client:
            me = await client.sign_in()
            return me.user.name, client.refresh_token

    try:
        name, refresh = asyncio.run(sign_in())
    except ConnectionLost as exc:
        fail(Exit.UNREACHABLE, f"cannot reach {url}: {exc}")
    except NotTether as exc:
        fail(Exit.UNREACHABLE, f"{url} is not a Tether server? {exc}")
    except TetherClientError as exc:
        fail(Exit.SIGNED_OUT, f"{url} refused the sign-in: {getattr(exc, 'detail', exc)}")
    if not refresh:
        fail(Exit.SIGNED_OUT, f"{url} gave no refresh token")
    creds.put(url, refresh_token=refresh, user=name, signed_in_at=time.time())
    err.print(f"Signed in to {url} as {name}. Kept in {creds.path}.", markup=False)


def logout(server: Server = None) -> None:
    """End the sign-in on the server, and forget it here."""
    creds = Credentials()
    try:
        url = creds.server(server)
        known = url is not None and creds.entry(url) is not None
    except Unreadable as exc:
        fail(Exit.SIGNED_OUT, str(exc))
    if url is None or not known:
        fail(Exit.SIGNED_OUT, "not signed in")

    async def body(client: AsyncClient, url: str) -> int:
        await client.sign_out()
        return Exit.OK

    try:
        run(server, body)
    except typer.Exit as done:
        creds.forget(url)
        err.print(f"Signed out of {url}.", markup=False)
        raise typer.Exit(0 if done.exit_code == Exit.UNREACHABLE else done.exit_code) from None


def sessions(
    server: Server = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    as_json: Json = False,
) -> None:
    """Your sessions, newest first: what each is doing and what waits for you."""

    async def body(client: AsyncClient, url: str) -> int:
        page = await client.sessions.list(limit=limit)
        if as_json:
            for s in page.sessions:
                emit(s.model_dump(mode="json"))
            return Exit.OK
        table = Table(box=None, header_style="bold")
        for col in ("session", "title", "state", "needs you", "created"):
            table.add_column(col)
        for s in page.sessions:
            table.add_row(
                safe(s.id),
                safe(s.title) or "—",
                s.state,
                str(s.needs_you or ""),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created_at)),
            )
        out.print(table if page.sessions else "No sessions yet: `tether run AGENT` starts one.")
        return Exit.OK

    run(server, body)


def report(model: BaseModel, line: str, as_json: bool) -> int:
    """What a one-shot command did: the object as JSON, or one line for a person."""
    if as_json:
        emit(model.model_dump(mode="json"))
    else:
        out.print(safe(line), markup=False)
    return Exit.OK


def _detach_note(what: list[str]) -> str | None:
    if not what:
        return None
    return f"\nDetached. {what[0]} keeps running on the server.\nTo follow it again: tether attach {what[1]}"


def run_command(
    agent: Annotated[str, typer.Argument(help="The agent, e.g. batch.")],
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", help="The agent's input: JSON, or @file (@- for stdin)."),
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Start it in this session (default: a new one).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="A new session's title.")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start it and return at once.")
    ] = False,
    server: Server = None,
    as_json: Json = False,
) -> None:
    """Start a task, then follow it until it ends (Ctrl-C leaves it running)."""
    value = parse_input(input)
    shown: list[str] = []

    async def body(client: AsyncClient, url: str) -> int:
        s = await (
            client.sessions.get(session) if session else client.sessions.create(title or agent)
        )
        try:
            task = await client.tasks.start(s.id, agent, value)
        except APIError:
            if not session:  # (refused: the session made for it would stay empty)
                with contextlib.suppress(TetherClientError):
                    await client.http.request("DELETE", f"/api/sessions/{s.id}")
            raise
        err.print(f"Started {task.id} ({agent}) in session {s.id}.", markup=False)
        shown[:] = [f"Task {task.id}", task.id]
        if detach:
            return report(task, task.id, as_json)
        target = following.Target(s.id, [task.id], footer=DETACH_HINT)
        return await following.follow(
            client, target, after=s.head_seq if as_json else None, as_json=as_json
        )

    run(server, body, lambda: _detach_note(shown))


def attach(
    target: Annotated[str, typer.Argument(help="A task (t_…) or a session (s_…).")],
    server: Server = None,
    after: Annotated[
        int | None,
        typer.Option(help="With --json: print the events after this seq (default: all)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Follow a task (or a session's running tasks) live until it ends; Ctrl-C detaches.

    The view shows the task tree with its progress, the newest events and the connection;
    it holds through dropped connections, server restarts and token expiry. With --json,
    one event per line instead."""
    shown: list[str] = []

    async def body(client: AsyncClient, url: str) -> int:
        found = await following.resolve(client, target)
        found.footer = DETACH_HINT
        what = f"Task {target}" if target.startswith("t_") else f"Session {target}'s work"
        shown[:] = [what, target]
        if not found.roots:
            err.print(f"Nothing is running in session {target}.", markup=False)
            return Exit.OK
        return await following.follow(
            client, found, after=(after or 0) if as_json else None, as_json=as_json
        )

    run(server, body, lambda: _detach_note(shown))


def chat(
    session: Annotated[
        str | None, typer.Argument(help="Go on with this session (default: a new one).")
    ] = None,
    server: Server = None,
) -> None:
    """Talk with a session's model agent, in a new session or an earlier one.

    Replies stream in as markdown; tool calls and sub-agents show as they happen, and
    approvals are asked here. /quit or Ctrl-D leaves; a reply under way keeps running."""
    shown: list[str] = []

    async def body(client: AsyncClient, url: str) -> int:
        s = await (client.sessions.get(session) if session else client.sessions.create("chat"))
        shown[:] = [s.id]
        return await Chat(client, s.id).run()

    def note() -> str | None:
        if not shown:
            return None
        return (
            f"\nLeft the chat. A reply under way keeps running.\nTo go on: tether chat {shown[0]}"
        )

    run(server, body, note)


def approve(
    task: Annotated[str, typer.Argument(help="The task that asks (t_…).")],
    approval: Annotated[
        str | None,
        typer.Argument(help="Which of its approvals (default: the one waiting)."),
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Say no.")] = False,
    note: Annotated[str | None, typer.Option(help="A note the agent reads.")] = None,
    server: Server = None,
    as_json: Json = False,
) -> None:
    """Answer a task's approval (yes, or --deny). A second answer is refused (exit 5)."""

    async def body(client: AsyncClient, url: str) -> int:
        if not task.startswith("t_"):
            fail(Exit.USAGE, f"approve takes a task id (t_…), not {task!r}")
        aid = approval
        if aid is None:
            waiting = [a for a in await client.approvals.list(task) if a.status == "pending"]
            if not waiting:
                fail(Exit.REFUSED, f"no approval of {task} is waiting")
            if len(waiting) > 1:
                ids = ", ".join(f"{a.id} ({a.tool})" for a in waiting)
                fail(Exit.USAGE, f"{len(waiting)} approvals wait; name one: {ids}")
            aid = waiting[0].id
        answered = await client.approvals.answer(task, aid, "deny" if deny else "approve", note)
        return report(answered, f"{answered.tool}: {answered.status}", as_json)

    run(server, body)


def cancel(
    task: Annotated[str, typer.Argument(help="The task (t_…); its sub-agents stop too.")],
    server: Server = None,
    as_json: Json = False,
) -> None:
    """Stop a task and everything it delegated."""

    async def body(client: AsyncClient, url: str) -> int:
        t = await client.tasks.cancel(task)
        return report(t, f"{t.id}: {t.status}", as_json)

    run(server, body)


def tail(
    session: Annotated[str, typer.Argument(help="The session (s_…).")],
    server: Server = None,
    after: Annotated[int, typer.Option(help="Print the events after this seq.")] = 0,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep printing new events.")
    ] = True,
    as_json: Json = False,
) -> None:
    """Print a session's events in seq order, each once, and keep following.

    It holds through drops and restarts; with --json, one event per line for a pipe."""

    async def body(client: AsyncClient, url: str) -> int:
        return await following.tail(client, session, after=after, follow=follow, as_json=as_json)

    run(server, body)


def register(app: typer.Typer) -> None:
    for fn, name in (
        (login, "login"),
        (logout, "logout"),
        (sessions, "sessions"),
        (run_command, "run"),
        (attach, "attach"),
        (chat, "chat"),
        (approve, "approve"),
        (cancel, "cancel"),
        (tail, "tail"),
    ):
        app.command(name, epilog=EXIT_CODES, rich_help_panel="Use a server")(fn)
