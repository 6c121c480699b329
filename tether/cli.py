"""`tether serve` and friends, and the terminal client (`tether login`, `run`, `attach`,
`chat`…). Every server flag can also be set as a TETHER_* environment variable. The server
is imported only by the commands that run it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tether.errors import TetherError
from tether.settings import Settings
from tether.term.commands import EXIT_CODES, register

app = typer.Typer(
    add_completion=False,
    help="Tether: long-running agent tasks that never lose the thread.",
    epilog=EXIT_CODES,
)
console = Console(stderr=True)
_fields = Settings.model_fields


def _help(name: str) -> str:
    return f"{_fields[name].description} (env: TETHER_{name.upper()})"


@app.callback()
def _root() -> None:
    """Tether: long-running agent tasks that never lose the thread."""


@app.command(rich_help_panel="Run the server")
def serve(
    host: Annotated[str | None, typer.Option(help=_help("host"))] = None,
    port: Annotated[int | None, typer.Option(help=_help("port"))] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    heartbeat_s: Annotated[float | None, typer.Option(help=_help("heartbeat_s"))] = None,
    log_level: Annotated[str | None, typer.Option(help=_help("log_level"))] = None,
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker", help=_help("worker"))
    ] = None,
) -> None:
    """Run the server: by default one process, one SQLite file in the data dir."""
    from tether import launch

    launch.serve(
        _settings(
            host=host,
            port=port,
            data_dir=data_dir,
            heartbeat_s=heartbeat_s,
            log_level=log_level,
            worker=worker,
        )
    )


@app.command("worker", rich_help_panel="Run the server")
def worker_command(
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    log_level: Annotated[str | None, typer.Option(help=_help("log_level"))] = None,
) -> None:
    """Run tasks only (no HTTP), on the shared database in TETHER_DATABASE_URL.

    A worker runs beside API processes started with `tether serve --no-worker`."""
    from tether import launch

    launch.worker(_settings(data_dir=data_dir, log_level=log_level, worker=True))


def _settings(**given: Any) -> Settings:
    return Settings(**{k: v for k, v in given.items() if v is not None})


users = typer.Typer(help="Manage users (the owner signs in with the bootstrap secret).")
app.add_typer(users, name="users", rich_help_panel="Run the server")


@users.command("add")
def users_add(
    name: str,
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user who signs in with a name and password."""
    from tether.auth.passwords import hash_password
    from tether.auth.sessions import AuthStore
    from tether.db.engine import Database

    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        console.print("[red]A password needs at least 8 characters.[/red]")
        raise typer.Exit(2)

    async def add() -> str:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        await asyncio.to_thread(db.migrate)
        try:
            store = AuthStore(db, idle_timeout_s=1, lifetime_s=1, grace_s=0)
            user = await store.create_user(name, await asyncio.to_thread(hash_password, password))
            return user.id
        finally:
            await db.close()

    try:
        user_id = asyncio.run(add())
    except TetherError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Created user {name} ({user_id}).")


register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
