"""A real `tether serve` in a subprocess, on a free loopback port, with a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import zygote

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll until check() returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


SECRET = "test-bootstrap-secret-0123456789"


@dataclass
class Server:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | zygote.ZygoteProcess | None = None
    log_path: Path | None = None
    # "serve" (with extra `args`, e.g. --no-worker), or "worker": no HTTP, ready when it says so.
    command: str = "serve"
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **env: str) -> Server:
        self.env.update(env)
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TETHER_HEARTBEAT_S": "0.2",
            # Every stream start the session mirror answers is checked against the database.
            "TETHER_MIRROR_CHECK": "1",
            "TETHER_AGENTS": json.dumps(["tests.helpers.agents"]),
            "TETHER_TEST_COUNTER": str(self.data_dir / "counter.txt"),
            "TETHER_BOOTSTRAP_SECRET": SECRET,
            # Hermetic: no provider key or local model of the machine's is used (the demo
            # model answers unless a test configures another).
            "ANTHROPIC_API_KEY": "",
            "OPENAI_API_KEY": "",
            "TETHER_MODEL_URL": "",
            **self.env,
        }
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server-{time.time_ns()}.log"
        port = ["--port", str(self.port)] if self.command == "serve" else []
        args = [
            self.command,
            *port,
            *self.args,
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
        ]
        if zygote.enabled():
            # `python -m tether.cli ARGS`, forked from a process that has imported it.
            self.proc = zygote.spawn(args, full_env, ROOT, self.log_path)
        else:
            with self.log_path.open("wb") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "tether.cli", *args],
                    env=full_env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        # One client for the whole wait: a new one per poll (httpx.get) costs ~20 ms of
        # CPU, which at a poll every 20 ms took a core from the server starting.
        with httpx.Client(timeout=1) as probe:
            wait_until(lambda: self._ready(probe), timeout=60, what=f"server on {self.url}")
        return self

    def _ready(self, probe: httpx.Client) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        if self.command == "worker":
            return "TETHER_WORKER=" in self.log()
        try:
            return probe.get(self.url + "/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def client(self, timeout: float = 10, secret: str | None = SECRET) -> httpx.Client:
        """A client that authenticates with the bootstrap secret header (as scripts do)."""
        headers = {"x-web-bootstrap-secret": secret} if secret else {}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)


def counter_lines(server: Server) -> list[str]:
    """What the test agents recorded in the server's counter file (one line per side effect)."""
    path = server.data_dir / "counter.txt"
    return path.read_text().splitlines() if path.exists() else []


def open_gate(server: Server) -> None:
    """Let the server's `gated_item`s (tests/helpers/agents.py) end their work at once."""
    counter = server.env.get("TETHER_TEST_COUNTER", str(server.data_dir / "counter.txt"))
    (Path(counter).parent / "gate").touch()


def slow_batch_with_a_running_child(
    server: Server, api: Api, item_agent: str = "counted_item"
) -> tuple[str, str, str]:
    """A session running a two-item batch of 30 s `item_agent`s (`counted_item` or
    `counted_workflow_item`), once the first child's step is running: (session id, root
    task id, that child's id)."""
    sid = api.session()
    root = api.start(sid, "batch", {"items": [0, 1], "delay_s": 30, "item_agent": item_agent})
    wait_until(lambda: "run 0" in counter_lines(server), what="the first child")
    # A child's step may start before the commit that creates its row lands.
    children = wait_until(lambda: api.task(root["id"])["children"], what="the child's row")
    return sid, root["id"], children[0]


def add_user(server: Server, name: str, password: str, env: dict[str, str] | None = None) -> None:
    """`tether users add NAME --password-stdin` on the server's data dir (`env` names a
    shared database, if the server is on one)."""
    args = ["users", "add", name, "--password-stdin", "--data-dir", str(server.data_dir)]
    run_env = {**os.environ, **(env or {})}
    if zygote.enabled():
        out = zygote.run(args, run_env, ROOT, input=password + "\n")
    else:
        out = subprocess.run(
            [sys.executable, "-m", "tether.cli", *args],
            input=password + "\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=run_env,
        )
    assert out.returncode == 0, out.stderr + out.stdout


def user_client(server: Server, name: str, password: str, timeout: float = 10) -> httpx.Client:
    """A client signed in as a password user (bearer token; default 10-minute TTL)."""
    c = httpx.Client(base_url=server.url, timeout=timeout)
    r = c.post("/auth", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    return c


@dataclass
class Frame:
    event: str
    data: Any
    id: str | None


def sse_frames(response: httpx.Response) -> Iterator[Frame]:
    """Parse an SSE response into frames (comments and retry lines are skipped)."""
    event, data, ident = "message", [], None
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Frame(event, json.loads("\n".join(data)), ident)
            event, data, ident = "message", [], None
        elif line.startswith(":") or line.startswith("retry:"):
            continue
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line.startswith("id: "):
            ident = line[4:]


class Api:
    """Thin helpers over the REST API for tests."""

    def __init__(self, client: httpx.Client) -> None:
        self.c = client

    def session(self, title: str = "test") -> str:
        r = self.c.post("/api/sessions", json={"title": title})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def start(self, session_id: str, agent: str, input: Any) -> dict[str, Any]:
        r = self.c.post(f"/api/sessions/{session_id}/tasks", json={"agent": agent, "input": input})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.c.get(f"/api/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (t := self.task(task_id))["status"] in statuses and t,
                timeout=timeout,
                interval=0.05,
                what=f"task {task_id} to reach {statuses}",
            )
        )

    def all_events(self, session_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            r = self.c.get(f"/api/sessions/{session_id}/events", params={"after": after})
            assert r.status_code == 200, r.text
            page = r.json()
            out.extend(page["events"])
            after = page["next_after"]
            if not page["more"]:
                return out


def ended(event: dict[str, Any], task_id: str, status: str = "completed") -> bool:
    return event["task_id"] == task_id and event["data"].get("status") == status


def follow_resuming(
    c: httpx.Client,
    session_id: str,
    root: str,
    timeout: float = 60,
    on_event: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Follow a session's stream until `root` completes, as a browser does: when the
    connection breaks, connect again with the last seq seen. (events received, connects)."""
    got: list[dict[str, Any]] = []
    connects = 0
    deadline = time.monotonic() + timeout
    while not (got and ended(got[-1], root)):
        assert time.monotonic() < deadline, f"{len(got)} events, {connects} connects"
        headers = {"Last-Event-ID": str(got[-1]["seq"])} if got else {}
        try:
            with c.stream("GET", f"/api/sessions/{session_id}/stream", headers=headers) as r:
                if r.status_code != 200:  # e.g. 502 while the proxy finds the live upstream
                    time.sleep(0.05)
                    continue
                connects += 1
                for f in sse_frames(r):
                    if f.event == "message":
                        got.append(f.data)
                        if on_event is not None:
                            on_event(got)
                        if ended(f.data, root):
                            break
        except httpx.HTTPError:
            pass  # the stream broke: connect again from the last seq
    return got, connects
