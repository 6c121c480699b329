"""`tether serve` and friends. Every flag can also be set as a TETHER_* environment variable."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console

from tether.services import Services
from tether.settings import Settings
from tether.web.app import create_app

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
                    console.print(f"Tether is running at [bold]http://{host}:{port}/[/bold]")
                    print(f"TETHER_URL=http://{host}:{port}/", flush=True)

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
) -> None:
    """Run the server: one process, one SQLite file in the data dir."""
    overrides = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "heartbeat_s": heartbeat_s,
            "log_level": log_level,
        }.items()
        if v is not None
    }
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    services = Services(settings)
    config = uvicorn.Config(
        create_app(settings, services),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        # Streams are long-lived; HTTP keep-alive between requests can be short.
        timeout_keep_alive=30,
    )
    console.print(f"Data dir: {settings.data_dir.resolve()}")
    _Server(config, services).run()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
