"""argon2id password hashing, off the event loop."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verified against when a user does not exist, so a miss costs what a hit costs. Not
    made at import, which cost every process 0.2 s (the CLI's commands too): the server
    makes it while it starts (`warm`)."""
    return _hasher.hash("tether-no-such-user")


def warm() -> None:
    _dummy()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def verify_password(stored: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored or _dummy(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
