"""The agents file (`TETHER_AGENTS_FILE`, TOML): which model agents there are and what each
may do.

    [agents.assistant]
    model = "anthropic:claude-sonnet-4-5"    # or "openai:gpt-4o", or any OpenAI-compatible
    base_url = "http://127.0.0.1:11434/v1"   # optional: another server (a local model)
    api_key_env = "ANTHROPIC_API_KEY"        # optional: default by provider
    system = "You are a careful assistant."
    tools = ["fetch", "read_file", "write_file", "list_files"]
    approval = ["write_file"]                # tools that ask a person first ("*": all)
    delegates = ["researcher"]               # agents it may hand a task to
    fetch_allow = ["docs.python.org"]        # hosts `fetch` may read
    mcp = ["http://127.0.0.1:9000/mcp", "tools/calc.py",   # MCP servers: URL, stdio script,
           { command = "npx", args = ["-y", "some-mcp"], env = { TOKEN = "${MY_TOKEN}" } }]
    call_timeout_s = 300                     # one model call at most (then retried)
    turn_timeout_s = 1800                    # one turn at most (approval waits not counted)
    mcp_timeout_s = 120                      # one MCP listing or tool call at most
    images = true                            # sees attached images (default: see below)
    default = true                           # the agent a new message goes to
    price_in = 3.0                           # optional: currency per million input tokens
    price_out = 15.0                         # and per million output tokens (tether/usage.py)

A file that names an unknown tool, provider or delegate is refused at start, with the reason.
A missing API key is not: the agent is listed as not ready and says which variable to set.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tether.errors import TetherError

TOOLS = ("fetch", "read_file", "write_file", "list_files")
# provider -> the variable its API key is read from by default. `demo` is Tether's own
# scripted model (offline, no key): what a first run offers when no provider key is set.
PROVIDERS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "demo": ""}


def seconds(value: float) -> str:
    """A time limit as a person reads it: "3 s", "5 min"."""
    if value >= 120:
        return f"{value / 60:g} min"
    return f"{value:g} s"


class AgentsFileError(TetherError):
    title = "Agents file refused"


class McpCommand(BaseModel):
    """An MCP server run as a command over stdio; `${NAME}` in env is taken from Tether's."""

    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    def resolved_env(self) -> dict[str, str]:
        return {k: os.path.expandvars(v) for k, v in self.env.items()}


class ModelAgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    model: str = Field(description="provider:model, e.g. anthropic:claude-sonnet-4-5")
    base_url: str | None = None
    api_key_env: str | None = None
    system: str = "You are a helpful assistant."
    description: str = ""
    tools: list[Literal["fetch", "read_file", "write_file", "list_files"]] = Field(
        default_factory=list
    )
    approval: list[str] = Field(default_factory=list)
    delegates: list[str] = Field(default_factory=list)
    fetch_allow: list[str] = Field(default_factory=list)
    mcp: list[str | McpCommand] = Field(
        default_factory=list,
        description="MCP servers whose tools the agent gets: a streamable-HTTP URL, the path "
        "of a Python stdio server script (relative to the agents file), or a command table.",
    )
    default: bool = False
    max_rounds: int = Field(20, ge=1, le=200, description="Model calls per turn at most.")
    max_retries: int = Field(6, ge=0, le=50, description="Retries of a failing model call.")
    max_tokens: int = Field(4096, ge=1, le=200_000)
    context_tokens: int = Field(
        128_000,
        ge=2048,
        le=10_000_000,
        description="The model's context window: a request (history, tools and the reply's "
        "max_tokens) is fitted under it, oldest tool results shortened first, then the oldest "
        "turns left out.",
    )
    call_timeout_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="One model call, from the request to the reply's last byte, at most this "
        "long (a stalled or trickling stream is cut, then retried like a network error). Raise "
        "it with max_tokens for a slow model: 4,096 tokens at 15 a second take 270 s.",
    )
    turn_timeout_s: float = Field(
        1800.0,
        gt=0,
        le=7 * 86_400,
        description="One turn, from its start (after the turn before it) to its answer, at most "
        "this long: every model call, retry and tool run counts, time waiting for a person's "
        "approval does not. Past it the turn fails and says so.",
    )
    mcp_timeout_s: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Listing an MCP server's tools, or one call of its tool, at most this long; "
        "a server that stalls past it is restarted and the call is reported as failed.",
    )
    stream_end_required: bool = Field(
        True,
        description="A reply stream that ends without the provider's end marker (Anthropic "
        "`message_stop`, an OpenAI `finish_reason`) is a broken call and is retried. Turn off "
        "only for an OpenAI-compatible server that never sends a finish_reason.",
    )
    internal: bool = Field(
        False, description="Only a sub-agent: not offered as an agent to talk to."
    )
    keyless: bool = Field(
        False, description="Its server needs no API key (a local OpenAI-compatible model)."
    )
    images: bool | None = Field(
        None,
        description="The model takes images: an attached image is sent to it as an image "
        "(else it is named by its path). Default: yes for Anthropic and for OpenAI's own "
        "API, no for another server (`base_url` with `openai:`) and for the demo.",
    )
    price_in: float | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="What a million input tokens of its model cost (cache reads and writes "
        "count as input); without prices a call's cost is unknown and shown as tokens only.",
    )
    price_out: float | None = Field(
        None, ge=0, le=1_000_000, description="What a million output tokens of its model cost."
    )

    @model_validator(mode="after")
    def _both_prices(self) -> ModelAgentConfig:
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("give both price_in and price_out (per million tokens), or neither")
        return self

    @field_validator("model")
    @classmethod
    def _provider_known(cls, v: str) -> str:
        provider, sep, name = v.partition(":")
        if not sep or not name or provider not in PROVIDERS:
            known = ", ".join(f"{p}:…" for p in PROVIDERS)
            raise ValueError(f"model must be one of {known}, got {v!r}")
        return v

    @property
    def provider(self) -> str:
        return self.model.partition(":")[0]

    @property
    def model_name(self) -> str:
        return self.model.partition(":")[2]

    @property
    def label(self) -> str:
        """The model, as a person reads it."""
        return "scripted demo (offline)" if self.provider == "demo" else self.model

    @property
    def key_env(self) -> str:
        return self.api_key_env or PROVIDERS[self.provider]

    def api_key(self) -> str | None:
        if self.provider == "demo":
            return "demo"
        key = os.environ.get(self.key_env) if self.key_env else None
        return key or ("none" if self.keyless else None)

    def problem(self) -> str | None:
        """Why this agent cannot call its model now (None: it can)."""
        if self.api_key() is None:
            return f"set {self.key_env} in the server's environment to use {self.model}"
        return None

    @property
    def takes_images(self) -> bool:
        if self.images is not None:
            return self.images
        return self.provider == "anthropic" or (self.provider == "openai" and not self.base_url)

    def needs_approval(self, tool: str) -> bool:
        return "*" in self.approval or tool in self.approval


def load(path: Path) -> list[ModelAgentConfig]:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise AgentsFileError(f"cannot read the agents file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentsFileError(f"the agents file {path} is not valid TOML: {exc}") from None
    table = raw.get("agents")
    if not isinstance(table, dict) or not table:
        raise AgentsFileError(f"the agents file {path} has no [agents.NAME] table")
    out: list[ModelAgentConfig] = []
    for name, body in table.items():
        if not isinstance(body, dict):
            raise AgentsFileError(f"{path}: agents.{name} must be a table")
        try:
            cfg = ModelAgentConfig(name=name, **body)
        except ValidationError as exc:
            raise AgentsFileError(f"{path}: agents.{name}: {exc}") from None
        cfg.mcp = [_server_ref(path, m) for m in cfg.mcp]
        out.append(cfg)
    names = {c.name for c in out}
    for c in out:
        for d in c.delegates:
            if d not in names:
                raise AgentsFileError(
                    f"{path}: agents.{c.name} delegates to {d!r}, which the file does not define"
                )
        for t in c.approval:
            # An MCP server's tools are known only once it answers: any name may be one.
            if t != "*" and t not in (*TOOLS, "delegate") and not c.mcp:
                raise AgentsFileError(f"{path}: agents.{c.name}: unknown tool {t!r} in approval")
    if sum(c.default for c in out) > 1:
        raise AgentsFileError(f"{path}: more than one agent says default = true")
    return out


def _server_ref(path: Path, ref: str | McpCommand) -> str | McpCommand:
    if isinstance(ref, McpCommand) or ref.startswith(("http://", "https://")):
        return ref
    script = (path.parent / ref).resolve()
    if not script.is_file():
        raise AgentsFileError(f"{path}: MCP server script {ref!r} not found (looked at {script})")
    return str(script)
