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
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import typer

FILE = "credentials.json"
FIX = "delete it, then `tether login URL` again"


class Unreadable(Exception):
    """The credentials file or its directory cannot be used (the message says how to fix it)."""


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
            raise Unreadable(f"cannot read {self.path} ({exc}): {FIX}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
            raise Unreadable(f"{self.path} is not a tether credentials file: {FIX}")
        return data

    def check(self) -> None:
        """Raise `Unreadable` now if the file or its directory cannot be used (before a
        sign-in that could not be kept)."""
        with self.locked():
            self.read()

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
        self._own_dir()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        try:
            return os.open(self.dir / (FILE + ".lock"), flags, 0o600)
        except OSError as exc:  # (a link planted there: ELOOP)
            raise Unreadable(f"cannot open {self.dir / (FILE + '.lock')} ({exc}): {FIX}") from exc

    def _own_dir(self) -> None:
        """The directory, made 0700 if it is ours and looser; refused if it is not ours
        (another user could swap the file for a link)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.stat(self.dir, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise Unreadable(f"{self.dir} is not a directory of yours: {FIX}")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(self.dir, 0o700)

    def write(self, data: dict[str, Any]) -> None:
        # A new file of a random name (O_EXCL: never a link someone left there), 0600 from
        # its first byte, then renamed over the old one.
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".credentials-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


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
