"""The streams and requests of one sign-in whose cached verdict ran out together share one
check of it (a reconnect storm's thousands of heartbeats are one database read), and every
one of them hears the verdict: a revoked sign-in is refused to all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether.auth.authenticator import Authenticator
from tether.auth.sessions import AuthSession
from tether.db.engine import Database
from tether.settings import Settings


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[Authenticator]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    db.migrate()
    yield Authenticator(Settings(data_dir=tmp_path, bootstrap_secret="s" * 32), db)
    await db.close()


async def test_concurrent_checks_of_one_sign_in_share_one_read_and_its_verdict(
    auth: Authenticator,
) -> None:
    signed = await auth.sign_in(secret="s" * 32, username=None, password=None, address="a")
    sid = signed.rotation.auth_session_id
    reads = 0
    check = auth.store.check

    async def counted(auth_session_id: str) -> AuthSession:
        nonlocal reads
        reads += 1
        return await check(auth_session_id)

    auth.store.check = counted  # type: ignore[method-assign]
    assert await asyncio.gather(*(auth.still_valid_sid(sid) for _ in range(200))) == [None] * 200
    assert reads == 1
    # One waiter that stops waiting cancels nobody else's check.
    auth.close_sign_in(sid, "cache dropped")
    first = asyncio.ensure_future(auth.still_valid_sid(sid))
    others = [asyncio.ensure_future(auth.still_valid_sid(sid)) for _ in range(50)]
    await asyncio.sleep(0)
    first.cancel()
    assert await asyncio.gather(*others) == [None] * 50 and reads == 2
    # Revoked: every concurrent caller is refused, with the reason.
    await auth.store.revoke(sid, "revoked in a test")
    auth.close_sign_in(sid, "revoked")
    verdicts = await asyncio.gather(*(auth.still_valid_sid(sid) for _ in range(100)))
    assert reads == 3 and len(set(verdicts)) == 1 and verdicts[0] is not None
