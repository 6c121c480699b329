"""Secrets kept in the data dir, readable by their owner only."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def load_or_create(path: Path, given: str | None = None, nbytes: int = 32) -> str:
    """The secret in `given`, else the one stored at `path`, else a new one written there 0600."""
    if given:
        return given
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
            path.chmod(0o600)
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def same(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
