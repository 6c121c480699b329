"""The app factory. The lifespan starts and stops the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse

from tether import __version__
from tether.services import Services
from tether.settings import Settings
from tether.web import problems
from tether.web.limits import BodyLimit
from tether.web.routes import auth, events, sessions, tasks
from tether.web.security import SecurityHeaders

STATIC = Path(__file__).with_name("static")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()
    svc = services or Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="Tether",
        version=__version__,
        description="Long-running agent tasks with a durable, resumable event stream.",
        lifespan=lifespan,
    )
    app.state.services = svc
    problems.install(app)
    for module in (auth, sessions, tasks, events):
        app.include_router(module.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app
