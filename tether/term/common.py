"""What every terminal command shares: the signed-in client, the exit codes, and the
messages a failure prints (to stderr: stdout is for what a script reads)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from tether.client import (
    APIError,
    AsyncClient,
    BadRequest,
    ConnectionLost,
    Forbidden,
    InvalidInput,
    NotFound,
    NotTether,
    Unauthorized,
)
from tether.term.credentials import Credentials, Unreadable


class Exit:
    """The exit codes, for scripts (`tether --help` lists them)."""

    OK = 0  # done; a task that completed
    FAILED = 1  # the task failed or was interrupted
    USAGE = 2  # a bad command line or input (the server's 400/422 too)
    CANCELLED = 3  # the task was cancelled
    SIGNED_OUT = 4  # not signed in, or the sign-in ended: `tether login URL`
    REFUSED = 5  # the server said no: not found, not yours, a conflict
    UNREACHABLE = 6  # the server could not be reached
    DETACHED = 130  # Ctrl-C: the task keeps running on the server


BY_STATUS = {
    "completed": Exit.OK,
    "failed": Exit.FAILED,
    "interrupted": Exit.FAILED,
    "cancelled": Exit.CANCELLED,
}

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

ServerOption = typer.Option(
    "--server",
    "-s",
    envvar="TETHER_URL",
    help="The server (default: the last one `tether login` signed in to).",
)
JsonOption = typer.Option("--json", help="Print JSON (one object per line) for scripts.")


# Control characters other than tab and newline (C0, DEL, C1): from the server, they could
# move the cursor, clear the screen or retitle the window; and the bidi overrides and
# zero-width marks that make text read otherwise than it is. Shown as U+FFFD instead.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """Text from the server (a title, an item, an error, a reply), fit for a terminal."""
    return _CONTROL.sub("\ufffd", text)


def fail(code: int, message: str) -> NoReturn:
    err.print(f"tether: {safe(message)}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def connect(server: str | None) -> tuple[AsyncClient, str]:
    """A client signed in with `tether login`'s saved sign-in (its refresh token is traded
    and saved under the credentials file's lock: commands can run side by side)."""
    creds = Credentials()
    try:
        url = creds.server(server)
        entry = creds.entry(url) if url else None
    except Unreadable as exc:
        fail(Exit.SIGNED_OUT, str(exc))
    if url is None:
        fail(Exit.SIGNED_OUT, "not signed in: run `tether login URL` first")
    if not entry or not entry.get("refresh_token"):
        fail(Exit.SIGNED_OUT, f"not signed in to {url}: run `tether login {url}`")
    try:
        retry_s = float(os.environ.get("TETHER_RETRY_S", "20"))
    except ValueError:
        fail(Exit.USAGE, "TETHER_RETRY_S must be a number of seconds")
    return AsyncClient(url, shared_refresh=creds.shared(url), retry_s=retry_s), url


def run(
    server: str | None,
    body: Callable[[AsyncClient, str], Awaitable[int]],
    detached: Callable[[], str | None] = lambda: None,
) -> NoReturn:
    """Run a command's body with a signed-in client; its result is the exit code. A
    failure becomes a one-line message and its exit code. Ctrl-C prints `detached()`
    (what keeps running, and how to come back) and exits 130."""
    client, url = connect(server)
    told: list[bool] = []

    def waiting(reason: str, left: float) -> None:
        if not told:  # (once: the first try that failed)
            told.append(True)
            err.print(
                f"tether: cannot reach {url} yet; trying again for {left:.0f} s (Ctrl-C stops)",
                markup=False,
                soft_wrap=True,
            )

    client.tokens.on_retry = waiting

    async def main() -> int:
        async with client:
            return await body(client, url)

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        note = detached()
        if note:
            err.print(note, markup=False, soft_wrap=True)
        raise typer.Exit(Exit.DETACHED) from None
    except Unauthorized as exc:
        why = exc.detail.split(": sign in again")[0]
        fail(Exit.SIGNED_OUT, f"signed out of {url} ({why}); `tether login {url}` signs in again")
    except InvalidInput as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []) if p != 'body') or 'input'}: {e.get('msg')}"
            for e in exc.errors[:5]
        )
        fail(Exit.USAGE, f"{exc.detail}" + (f" ({where})" if where else ""))
    except BadRequest as exc:
        fail(Exit.USAGE, f"{exc.title}: {exc.detail}")
    except (NotFound, Forbidden) as exc:
        fail(Exit.REFUSED, exc.detail or exc.title)
    except APIError as exc:
        fail(Exit.REFUSED, f"{exc.title} ({exc.status}): {exc.detail}")
    except ConnectionLost as exc:
        fail(Exit.UNREACHABLE, f"cannot reach {url}: {exc}")
    except NotTether as exc:
        fail(Exit.UNREACHABLE, f"{url} is not a Tether server? {exc}")
    except BrokenPipeError:
        quiet_pipe()
    raise typer.Exit(code)


def quiet_pipe() -> NoReturn:
    """stdout was closed (`| head`): what was wanted was read; end quietly, and keep the
    interpreter's last flush from complaining."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(Exit.OK)


def parse_input(given: str | None) -> Any:
    """`--input`: JSON text, or @file with JSON in it (@- reads standard input)."""
    if given is None:
        return None
    text = given
    if given.startswith("@"):
        name = given[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as exc:
            fail(Exit.USAGE, f"cannot read --input {given}: {exc.strerror or exc}")
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(Exit.USAGE, f"--input is not JSON ({exc}); give JSON text or @file")


def emit(value: Any) -> None:
    """One JSON object on one line of stdout (a closed pipe ends the command quietly)."""
    try:
        sys.stdout.write(json.dumps(value, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_pipe()
