"""One typed settings object, read from `TETHER_*` environment variables and CLI flags."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# An origin as a browser sends it: scheme, host (a name or a bracketed IPv6 address), the port
# unless it is the scheme's default; lower case, no path, no trailing slash.
_ORIGIN = re.compile(r"^https?://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def _default_data_dir() -> Path:
    return Path.home() / ".tether"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Where the SQLite file lives."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database; default: tether.db in the data dir."
    )

    heartbeat_s: float = Field(15.0, gt=0, description="Seconds between stream heartbeats.")
    stream_retry_ms: int = Field(1000, ge=0, description="SSE `retry:` hint sent to clients.")
    page_limit: int = Field(1000, ge=1, description="Largest page of events one request returns.")
    retention_events: int = Field(
        0, ge=0, description="Events kept per session (0 keeps all); older cursors get 410."
    )
    page_bytes: int = Field(
        4 << 20, ge=1024, description="A page of events stops at about this much event data."
    )
    mirror_check: bool = Field(
        False,
        description="Tests: compare each stream start served from memory with a read of the "
        "database, and log a difference.",
    )
    snapshot_tasks: int = Field(
        1000, ge=1, description="Most tasks a stream snapshot lists (unfinished ones first)."
    )
    max_body_bytes: int = Field(1 << 20, ge=1, description="Largest request body accepted.")
    max_import_bytes: int = Field(
        64 << 20,
        ge=1,
        description="Largest session export `POST /api/sessions/import` takes (its workspace's "
        "files ride in it, base64); larger gets 413 and nothing is stored.",
    )
    max_event_bytes: int = Field(
        1 << 20, ge=1024, description="Largest event (and task result) an agent may record."
    )
    max_header_bytes: int = Field(
        65536, ge=1024, description="Largest request head (request line and headers) accepted."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection must send a whole request head within this time."
    )
    max_connections: int = Field(
        20000,
        ge=1,
        description="Open connections (streams included) beyond which new ones get 503.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For is believed (JSON list); "
        "none by default, so a client cannot pick its own address.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins other than Tether's own allowed to call the API with a "
        'bearer token (JSON list of exact origins, e.g. ["http://localhost:3000"]): an AG-UI '
        "frontend served elsewhere. None by default: no CORS headers. Never with credentials: "
        "the refresh cookie stays same-origin.",
    )

    agents: list[str] = Field(
        default_factory=list, description="Extra modules to import; each registers agents."
    )
    agents_file: Path | None = Field(
        None,
        description="A TOML file of model agents (model, system prompt, tools, delegates, "
        "approvals); API keys come from the environment.",
    )
    model_url: str | None = Field(
        None,
        description="Without an agents file: the default assistant talks to this "
        "OpenAI-compatible server (a local model; no key needed).",
    )
    model: str | None = Field(
        None,
        description="Without an agents file: the default assistant's model, e.g. "
        "`anthropic:claude-sonnet-4-5`, or the local server's model name.",
    )
    model_processes: int = Field(
        2,
        ge=0,
        description="Processes that run the model calls (the provider's stream and its "
        "parsing), so that the server's event loop serves streams only; started with the "
        "first model call. 0: model calls run in the server's own process.",
    )
    app_version: str | None = Field(
        None,
        description="Code version recorded on each task; default: a hash of Tether and agent code. "
        "Tasks left running by another version are marked interrupted at start.",
    )
    dbos_poll_s: float = Field(
        0.02, gt=0, description="DBOS notification polling interval in embedded mode."
    )
    executor_id: str = Field(
        "local",
        min_length=1,
        max_length=100,
        description="This process's stable name in DBOS: at start it resumes the work it had "
        "begun. Every process on one shared database needs its own (a process started under "
        "an id a live one holds is refused).",
    )
    worker: bool = Field(
        True,
        description="Run tasks in this process. False (`serve --no-worker`): API only, on a shared "
        "database whose `tether worker` processes run the tasks.",
    )
    worker_concurrency: int | None = Field(
        None,
        ge=1,
        description="On a shared database: most top-level tasks one worker runs at once (their "
        "sub-agents run beside them); unset: no limit.",
    )
    queue_poll_s: float = Field(
        1.0,
        gt=0,
        description="On a shared database: how often a worker looks for queued tasks it was not "
        "told of (a task queued, or one of its own ended, wakes it at once).",
    )
    worker_heartbeat_s: float = Field(
        2.0, gt=0, description="On a shared database: seconds between a worker's heartbeats."
    )
    worker_stale_s: float = Field(
        10.0,
        gt=0,
        description="On a shared database: a worker silent this long is dead, and a live one "
        "takes over its unfinished tasks.",
    )
    child_poll_s: float = Field(
        5.0,
        gt=0,
        description="How often a parent re-checks a delegated child in the database (a backstop: "
        "it is woken when the child ends, here or in another process).",
    )
    log_level: str = Field("info", description="Log level of the server.")

    bootstrap_secret: str | None = Field(
        None,
        description="Owner sign-in secret; default: generated once into the data dir (mode 0600).",
    )
    jwt_secret: str | None = Field(
        None, description="Access-token signing key; default: generated once into the data dir."
    )
    access_ttl_s: float = Field(600.0, ge=1, description="Lifetime of an access token.")
    idle_timeout_s: float = Field(
        86400.0,
        gt=0,
        description="An auth session idles out after this long unused (never while its user's task runs).",
    )
    session_lifetime_s: float = Field(
        30 * 86400.0, gt=0, description="Absolute lifetime of an auth session."
    )
    refresh_grace_s: float = Field(
        10.0, ge=0, description="A just-rotated refresh token still works this long (two tabs)."
    )
    auth_max_failures: int = Field(
        10, ge=1, description="Failed sign-ins per client address before 429."
    )
    auth_failure_window_s: float = Field(
        60.0, gt=0, description="Window over which failed sign-ins are counted."
    )
    auth_prune_s: float = Field(
        600.0, gt=0, description="How often ended sign-ins and spent refresh tokens are deleted."
    )

    # --- issue 26 limits ---
    # Per-user quotas (docs/reliability.md, "Limits"): past each one a request gets a
    # problem+json saying which limit it met; 0 turns a count or size limit off.
    max_streams_per_user: int = Field(
        50,
        ge=0,
        description="Open streams one user may hold in this process (a stream per open tab); "
        "more get 429. At the limit, a new stream of the same sign-in and session replaces "
        "that sign-in's oldest one there (a reloaded page is not locked out by its own "
        "dead stream).",
    )
    max_sessions_per_user: int = Field(
        10_000, ge=0, description="Sessions one user may have; creating more gets 429."
    )
    max_queued_turns: int = Field(
        20,
        ge=0,
        description="Unfinished turns (running or waiting their turn) one session may hold; "
        "a message beyond them gets 429.",
    )
    max_storage_bytes_per_user: int = Field(
        1 << 30,
        ge=0,
        description="What one user's sessions may store (events, steps, files); past it new "
        "turns and tasks get 507 and a running turn fails before its next model call. "
        "Deleting a session frees its share.",
    )
    max_delegations_per_reply: int = Field(
        20,
        ge=0,
        description="Sub-agents one model reply may start; the calls beyond get a tool "
        "result saying so (the model sees the limit).",
    )
    max_tool_result_chars: int = Field(
        100 * 1024,
        ge=1024,
        description="A tool's result (MCP included) and a sub-agent's answer are cut to this "
        "many characters before they are stored or sent to the model (the cut is said).",
    )
    disk_reserve_bytes: int = Field(
        16 << 20,
        ge=0,
        description="On SQLite: room kept in a file in the data dir (`reserve`) and given back "
        "when the disk is full and a session is being deleted, so that the delete, which "
        "frees room, can be written. Made again at the next start.",
    )
    max_saved_response_bytes: int = Field(
        1 << 20,
        ge=4096,
        description="A model reply (its text and tool arguments) is stored, and read from the "
        "model, up to this size: a tool call whose arguments do not fit is refused to the "
        "model with the limit, and a reply that streams past it is cut there.",
    )

    # --- issue 30 attachments ---
    max_attachment_bytes: int = Field(
        10 << 20,
        ge=1,
        description="Largest file one may attach to a message; a larger upload gets 413 and "
        "nothing is stored.",
    )
    max_attachments_per_message: int = Field(
        10, ge=0, description="Files one message may carry (0: attachments are off)."
    )
    attachment_types: list[str] = Field(
        default_factory=lambda: [
            "text/*",
            "application/json",
            "application/pdf",
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
        ],
        description="Media types a file may be attached as (JSON list; `text/*` for any "
        "text). The type is read from the file's bytes and name, never taken from the client; "
        "another gets 415.",
    )
    attachment_inline_chars: int = Field(
        20_000,
        ge=0,
        description="A text attachment is put in the model's request up to this many "
        "characters; past them, its head and where the whole file is (the agent reads it "
        "with read_file).",
    )

    budget_user: float | None = Field(
        None,
        gt=0,
        description="What one user's model calls may cost per calendar month (UTC), in the "
        "currency of the agents file's prices: a call is refused before it is made once the "
        "month's spend and its input's estimated cost would pass it. Unset: no limit.",
    )

    # --- issue 26 boot ---
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A request's whole body must arrive within this time of its head (else 408).",
    )

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        # An origin written another way (a trailing slash, upper case, a default port) would
        # never match what a browser sends, and `*` would match every site: refused at start.
        for origin in origins:
            default_port = origin.endswith(":80" if origin.startswith("http:") else ":443")
            if not _ORIGIN.match(origin) or default_port:
                raise ValueError(
                    f"{origin!r} is not an exact origin: scheme://host[:port] in lower case, "
                    "the port only if not the scheme's default, no path or trailing slash "
                    "(e.g. http://localhost:3000)"
                )
        return origins

    def missing_shared_secrets(self) -> list[str]:
        """On a shared database (not SQLite) every process must sign and check tokens with
        one key and accept one owner secret: generating them into each process's data dir
        would make a token from one API process worthless at the next. Those not set."""
        if self.resolved_database_url.startswith("sqlite"):
            return []
        return [
            f"TETHER_{name.upper()}"
            for name in ("jwt_secret", "bootstrap_secret")
            if not getattr(self, name)
        ]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tether.db').resolve()}"
