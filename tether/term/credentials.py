"""Where `tether login` keeps its sign-ins: one file in the user's config directory, readable
by its owner only (0600, in a 0700 directory), holding each server's refresh token.

The refresh token rotates on every refresh, and commands run side by side (an `attach` in
one terminal, an `approve` in another): a file lock is held across each refresh's load,
trade and save (`tether.client.SharedRefresh`), so no process trades a token another one
already traded. The file is replaced whole (written aside, then renamed): a crash leaves
the old one or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import typer

FILE = "credentials.json"


def config_dir() -> Path:
    """`TETHER_CONFIG_DIR`, else the platform's config directory for tether
    (`~/.config/tether` on Linux, following XDG_CONFIG_HOME)."""
    given = os.environ.get("TETHER_CONFIG_DIR")
    return Path(given) if given else Path(typer.get_app_dir("tether"))


def normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url


class Credentials:
    """The sign-ins of this user's terminal, by server URL, and which server is the default
    (the last one signed in to)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or config_dir()
        self.path = self.dir / FILE

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"default": None, "servers": {}}
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read {self.path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
            raise typer.BadParameter(f"{self.path} is not a tether credentials file")
        return data

    def server(self, url: str | None) -> str | None:
        """The server a command talks to: the one given, else the default."""
        if url:
            return normal_url(url)
        default = self.read().get("default")
        return str(default) if default else None

    def entry(self, url: str) -> dict[str, Any] | None:
        found = self.read()["servers"].get(url)
        return dict(found) if isinstance(found, dict) else None

    def put(self, url: str, **fields: Any) -> None:
        with self.locked():
            data = self.read()
            data["servers"][url] = {**data["servers"].get(url, {}), **fields}
            data["default"] = url
            self.write(data)

    def forget(self, url: str) -> None:
        with self.locked():
            data = self.read()
            data["servers"].pop(url, None)
            if data.get("default") == url:
                data["default"] = next(iter(data["servers"]), None)
            self.write(data)

    def shared(self, url: str) -> SharedFile:
        return SharedFile(self, url)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = self._lock_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # (closing lets the lock go)

    @contextlib.asynccontextmanager
    async def locked_async(self) -> AsyncIterator[None]:
        """The same lock, waited for without blocking the event loop (a stream, a live view
        keep running), and given up cleanly if the wait is cancelled (a Ctrl-C)."""
        fd = self._lock_file()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.02)
            yield
        finally:
            os.close(fd)

    def _lock_file(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(self.dir / (FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # (an older file's looser mode is not kept)
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class SharedFile:
    """One server's refresh token in the credentials file, as a `SharedRefresh`."""

    def __init__(self, creds: Credentials, url: str) -> None:
        self.creds = creds
        self.url = url

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.creds.locked_async()

    def load(self) -> str | None:
        entry = self.creds.entry(self.url)
        token = entry.get("refresh_token") if entry else None
        return str(token) if token else None

    def save(self, refresh_token: str) -> None:
        """Called with the lock held (a refresh)."""
        data = self.creds.read()
        data["servers"].setdefault(self.url, {})["refresh_token"] = refresh_token
        self.creds.write(data)
