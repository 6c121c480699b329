"""The app factory. The lifespan starts and stops the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from tether import __version__
from tether.services import Services
from tether.settings import Settings
from tether.web import problems
from tether.web.bodies import RefuseNul
from tether.web.cors import Cors
from tether.web.limits import BodyLimit
from tether.web.responses import RAW_SEND
from tether.web.routes import (
    agui,
    attachments,
    auth,
    conversations,
    events,
    exports,
    files,
    search,
    sessions,
    shares,
    tasks,
    usage,
)
from tether.web.schemas import Health, Problem
from tether.web.security import SecurityHeaders

STATIC = Path(__file__).with_name("static")
SECURITY_SCHEMES = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from POST /auth or POST /auth/refresh.",
    },
    "APIKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "x-web-bootstrap-secret",
        "description": "The bootstrap secret `tether serve` printed (for scripts).",
    },
    "RefreshCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "tether_refresh",
        "description": "The refresh token, an HttpOnly cookie scoped to /auth.",
    },
}


class _App(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The server's own `send`: an event stream's body goes to it past the middleware,
        # which has nothing to do once the response has started (web/responses.py).
        scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


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

    app = _App(
        title="Tether",
        version=__version__,
        description="Long-running agent tasks with a durable, resumable event stream. "
        "Every error is `application/problem+json`.",
        lifespan=lifespan,
    )
    app.state.services = svc
    problems.install(app)
    for module in (
        auth,
        sessions,
        conversations,
        tasks,
        events,
        files,
        attachments,
        agui,
        shares,
        exports,
        search,
        usage,
    ):
        app.include_router(module.router)

    @app.get("/healthz", tags=["operations"], response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_attachment_bytes,
        import_bytes=settings.max_import_bytes,
    )
    app.add_middleware(RefuseNul)
    app.add_middleware(problems.CrashGuard)
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:  # outermost, so that every answer, an error too, carries it
        app.add_middleware(Cors, origins=settings.cors_origins)
    _truthful_openapi(app, svc)
    return app


def _truthful_openapi(app: FastAPI, svc: Services) -> None:
    """What FastAPI cannot know, written into the OpenAPI document: the Problem schema every
    error response refers to; the security schemes (the authenticator reads the headers
    itself rather than through FastAPI's security dependencies, which cost every request);
    no default 422 (a JSON shape Tether never sends); a task's body as one alternative per
    registered agent, with that agent's input schema; the page limit this server was
    configured with; a message's `agent` as one of the model agents there are."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas["TaskIn"] = _task_in(svc, schemas)
        models = [
            a.name
            for a in svc.registry.all()
            if a.meta.get("kind") == "model" and not a.meta.get("internal")
        ]
        for body in ("MessageIn", "RegenerateIn"):  # only the model agents one can talk to
            if body in schemas:
                agent: dict[str, object] = (
                    {"type": "string", "enum": models} if models else {"not": {}}
                )
                schemas[body]["properties"]["agent"]["anyOf"] = [agent, {"type": "null"}]
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        for path, item in schema["paths"].items():
            for op in item.values():
                if path.startswith("/api/"):
                    op["security"] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
                elif path == "/auth/refresh":
                    op["security"] = [{"RefreshCookie": []}]
        events_op = schema["paths"]["/api/sessions/{session_id}/events"]["get"]
        for param in events_op["parameters"]:
            if param["name"] == "limit":
                param["schema"] = {**_non_null(param["schema"]), "maximum": svc.settings.page_limit}
        for item in schema.get("paths", {}).values():
            for op in item.values():
                responses = op.get("responses", {})
                # FastAPI documents a JSON 422 for every route with parameters; routes that
                # can answer 422 declare their own (problem+json) one.
                if "application/json" in responses.get("422", {}).get("content", {}):
                    del responses["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = schema
        return schema

    # FastAPI's documented way to shape the schema is to replace this method.
    app.openapi = openapi  # type: ignore[method-assign]


def _name_agents(schema: Any, names: list[str]) -> None:
    """A field that names an agent (`x-agent`) is one of the registered ones (a typo is a
    422, so the schema says which names are valid)."""
    if isinstance(schema, dict):
        if schema.get("x-agent"):
            schema["enum"] = names
        for value in schema.values():
            _name_agents(value, names)
    elif isinstance(schema, list):
        for value in schema:
            _name_agents(value, names)


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    for option in schema.get("anyOf", ()):
        if option.get("type") != "null":
            return {**option, **{k: v for k, v in schema.items() if k != "anyOf"}}
    return schema


def _task_in(svc: Services, schemas: dict[str, Any]) -> dict[str, Any]:
    """`{agent, input}`: one alternative per agent that can be started on its own (not the
    internal ones, which run only as sub-agents), each with its own input schema."""
    options = []
    for spec in svc.registry.all():
        if spec.internal or spec.meta.get("internal"):
            continue
        model = spec.input_model.model_json_schema(ref_template="#/components/schemas/{model}")
        _name_agents(model, [a.name for a in svc.registry.all()])
        schemas.update(model.pop("$defs", {}))
        options.append(
            {
                "type": "object",
                "title": f"Start {spec.name}",
                "properties": {
                    "agent": {"const": spec.name, "type": "string"},
                    "input": model,
                },
                # A missing input means {}: required only where {} would not validate.
                "required": ["agent", "input"] if model.get("required") else ["agent"],
            }
        )
    return {"title": "TaskIn", "oneOf": options}
