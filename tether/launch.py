"""Starting the server and a worker (`tether serve`, `tether worker`): imported only by those
commands, so the terminal client's commands start without loading the server."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import typer
import uvicorn
from rich.console import Console

from tether import heap
from tether.errors import TetherError
from tether.services import Services
from tether.settings import Settings
from tether.web.app import create_app
from tether.web.wire import guarded_protocol

console = Console(stderr=True)


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
            heap.freeze()  # the services are running: what they hold lives as long as we do
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


def serve(settings: Settings) -> None:
    if missing := settings.missing_shared_secrets():
        refuse(
            f"on a database other than SQLite, set {' and '.join(missing)} "
            "(the same values in every process)"
        )
    if not settings.worker and settings.resolved_database_url.startswith("sqlite"):
        refuse(
            "--no-worker needs a shared database (TETHER_DATABASE_URL); on SQLite the server runs its tasks"
        )
    start_logging(settings)
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


def worker(settings: Settings) -> None:
    if settings.resolved_database_url.startswith("sqlite"):
        refuse(
            "a worker needs a shared database (TETHER_DATABASE_URL); on SQLite `tether serve` runs the tasks"
        )
    start_logging(settings)
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    services = Services(settings)
    _claim(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await services.start()
    heap.freeze()
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
        refuse(exc.detail)


def refuse(why: str) -> None:
    typer.echo(f"tether: {why}; not starting.", err=True)
    raise typer.Exit(2)


def start_logging(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
