"""`tether serve` and friends. Every flag can also be set as a TETHER_* environment variable."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console

from tether.errors import TetherError
from tether.services import Services
from tether.settings import Settings
from tether.web.app import create_app
from tether.web.wire import guarded_protocol

app = typer.Typer(
    add_completion=False, help="Tether: long-running agent tasks that never lose the thread."
)
console = Console(stderr=True)
_fields = Settings.model_fields


def _help(name: str) -> str:
    return f"{_fields[name].description} (env: TETHER_{name.upper()})"


class _Server(uvicorn.Server):
    """uvicorn, plus: open streams hear about SIGTERM first and close with a retry hint,
    and the URL is printed once the socket is bound."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started:
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    assert self.services.auth is not None
                    # The secret rides in the fragment, which browsers never send to a server.
                    url = f"http://{host}:{port}/#secret={self.services.auth.bootstrap_secret}"
                    console.print(f"Tether is running. Open [bold]{url}[/bold] to sign in.")
                    print(f"TETHER_URL={url}", flush=True)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.services.begin_shutdown)
        super().handle_exit(sig, frame)


@app.callback()
def _root() -> None:
    """Tether: long-running agent tasks that never lose the thread."""


@app.command()
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
    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        heartbeat_s=heartbeat_s,
        log_level=log_level,
        worker=worker,
    )
    if missing := settings.missing_shared_secrets():
        _refuse(
            f"on a database other than SQLite, set {' and '.join(missing)} "
            "(the same values in every process)"
        )
    if not settings.worker and settings.resolved_database_url.startswith("sqlite"):
        _refuse(
            "--no-worker needs a shared database (TETHER_DATABASE_URL); on SQLite the server runs its tasks"
        )
    _start_logging(settings)
    services = Services(settings)
    _claim(services)
    config = uvicorn.Config(
        create_app(settings, services),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        # Streams are long-lived; HTTP keep-alive between requests can be short.
        timeout_keep_alive=30,
        http=guarded_protocol(
            settings.max_header_bytes,
            settings.header_timeout_s,
            settings.max_connections,
            body_timeout_s=settings.body_timeout_s,
        ),
        # X-Forwarded-For is believed from the configured proxies only: otherwise anyone on
        # loopback could pick the address the sign-in limiter counts against.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    console.print(f"Data dir: {settings.data_dir.resolve()}")
    _Server(config, services).run()


@app.command("worker")
def worker_command(
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    log_level: Annotated[str | None, typer.Option(help=_help("log_level"))] = None,
) -> None:
    """Run tasks only (no HTTP): a worker on the shared database in TETHER_DATABASE_URL,
    beside API processes started with `tether serve --no-worker`."""
    settings = _settings(data_dir=data_dir, log_level=log_level, worker=True)
    if settings.resolved_database_url.startswith("sqlite"):
        _refuse(
            "a worker needs a shared database (TETHER_DATABASE_URL); on SQLite `tether serve` runs the tasks"
        )
    _start_logging(settings)
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    services = Services(settings)
    _claim(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await services.start()
    console.print(f"Tether worker {settings.executor_id} is running.")
    print(f"TETHER_WORKER={settings.executor_id}", flush=True)
    try:
        await stop.wait()
    finally:
        await services.stop()


def _claim(services: Services) -> None:
    """Refuse to start under an executor id another live process holds."""
    try:
        services.claim_executor_id()
    except TetherError as exc:
        _refuse(exc.detail)


def _settings(**given: Any) -> Settings:
    return Settings(**{k: v for k, v in given.items() if v is not None})


def _refuse(why: str) -> None:
    typer.echo(f"tether: {why}; not starting.", err=True)
    raise typer.Exit(2)


def _start_logging(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


users = typer.Typer(help="Manage users (the owner signs in with the bootstrap secret).")
app.add_typer(users, name="users")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
