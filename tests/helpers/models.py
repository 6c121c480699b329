"""Model agents for tests: an agents file pointing at the local fake provider, and the
environment a server needs to use it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.server import Api, Server

KEYS = {
    "TETHER_TEST_ANTHROPIC_KEY": "sk-test-anthropic",
    "TETHER_TEST_OPENAI_KEY": "sk-test-openai",
}


def agents_toml(
    fake: RunningFakeLLM,
    main: str = "anthropic",
    approval: list[str] | None = None,
    extra: str = "",
) -> str:
    """`assistant` (on `main`'s wire format) may write files, with approval, and delegate
    to `helper` (on the other one)."""
    other = "openai" if main == "anthropic" else "anthropic"

    def model(provider: str, name: str) -> str:
        base = fake.url if provider == "anthropic" else fake.url + "/v1"
        env = f"TETHER_TEST_{provider.upper()}_KEY"
        return f'model = "{provider}:{name}"\nbase_url = "{base}"\napi_key_env = "{env}"'

    return f"""
[agents.assistant]
{model(main, "assistant-model")}
system = "You are the test assistant."
description = "Chats, writes files in the workspace, and delegates."
tools = ["read_file", "write_file", "list_files", "fetch"]
approval = {json.dumps(["write_file"] if approval is None else approval)}
delegates = ["helper"]
fetch_allow = ["127.0.0.1:{fake.port}"]
default = true
{"" if "max_retries" in extra else "max_retries = 3"}
{extra}

[agents.helper]
{model(other, "helper-model")}
system = "You are a helper."
description = "Does one small task."
"""


def model_server(
    make_server: Callable[..., Server],
    fake: RunningFakeLLM,
    tmp_path: Path,
    main: str = "anthropic",
    approval: list[str] | None = None,
    extra: str = "",
    **env: str,
) -> Server:
    path = tmp_path / f"agents-{main}-{len(list(tmp_path.glob('agents-*')))}.toml"
    path.write_text(agents_toml(fake, main, approval, extra))
    return make_server(TETHER_AGENTS_FILE=str(path), **{**KEYS, **env})


def model_session(
    make_server: Callable[..., Server],
    fake: RunningFakeLLM,
    tmp_path: Path,
    title: str = "test",
    **kwargs: Any,
) -> tuple[Server, Api, str]:
    """A server with the model agents (as `model_server`), a client, and a fresh session."""
    server = model_server(make_server, fake, tmp_path, **kwargs)
    api = Api(server.client())
    return server, api, api.session(title)


def control(fake: RunningFakeLLM, **body: Any) -> None:
    httpx.post(fake.url + "/_control", json=body).raise_for_status()


def say(api: Api, sid: str, text: str, **extra: Any) -> dict[str, Any]:
    r = api.c.post(f"/api/sessions/{sid}/messages", json={"text": text, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def messages_by_id(events: list[dict[str, Any]]) -> dict[str, str]:
    """The text of every streamed message, from its CONTENT deltas, in order."""
    out: dict[str, str] = {}
    for e in events:
        if e["type"] == "TEXT_MESSAGE_CONTENT":
            out[e["data"]["messageId"]] = out.get(e["data"]["messageId"], "") + e["data"]["delta"]
    return out


def workspace_file(api: Api, sid: str, path: str) -> str | None:
    """A file of the session's workspace, read through the API (None: no such file)."""
    r = api.c.get(f"/api/sessions/{sid}/files/{path}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.text


def waited_for(api: Api, sid: str, task_id: str) -> str | None:
    """The turn this one said it waited for (`turn.waiting`), or None: it waited for none."""
    for e in api.all_events(sid):
        if e["type"] == "turn.waiting" and e["task_id"] == task_id:
            return str(e["data"]["after"])
    return None
