"""Read-only share links: a token that reads one session and nothing else.

A link is a row of `tether_shares`. Its token (`tsh_…`) is shown once, when the link is
made, and kept only as its SHA-256, as refresh tokens are. It is sent as
`Authorization: Bearer tsh_…`; the routes that read a session accept it for that session
only (`web/deps.py`, `Reader`), and to every other route it is a bearer token that is not an
access token: 401.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tether.auth.tokens import hash_refresh_token
from tether.db.engine import Database
from tether.db.ids import new_id
from tether.db.schema import sessions, shares
from tether.errors import NotFound, Unauthorized

TOKEN_PREFIX = "tsh_"
ENDED = "ask its owner for a new link"


@dataclass(frozen=True, slots=True)
class Share:
    id: str
    session_id: str
    owner: str
    label: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    @property
    def principal_id(self) -> str:
        """The name its streams are subscribed under (as a sign-in's id): revoking the link
        ends them at once, in every process, the way a sign-out ends a sign-in's."""
        return f"share:{self.id}"

    def ended(self, now: float) -> str | None:
        """Why the link no longer reads anything, or None while it does."""
        if self.revoked_at is not None:
            return f"this share link was revoked: {ENDED}"
        if self.expires_at is not None and now >= self.expires_at:
            return f"this share link expired: {ENDED}"
        return None


def is_share_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def _share(row: Any) -> Share:
    return Share(
        row.id,
        row.session_id,
        row.owner,
        row.label,
        row.created_at,
        row.expires_at,
        row.revoked_at,
    )


_COLUMNS = (
    shares.c.id,
    shares.c.session_id,
    sessions.c.owner,
    shares.c.label,
    shares.c.created_at,
    shares.c.expires_at,
    shares.c.revoked_at,
)
_JOINED = sa.select(*_COLUMNS).join(sessions, sessions.c.id == shares.c.session_id)


class ShareStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, session_id: str, owner: str, *, label: str, expires_in_s: float | None
    ) -> tuple[Share, str]:
        """A new link to the owner's session, and its token (never readable again)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        expires = None if expires_in_s is None else now + expires_in_s
        share_id = new_id("sh")

        def tx(conn: sa.Connection) -> None:
            owned = conn.scalar(
                sa.select(sessions.c.id).where(
                    sessions.c.id == session_id, sessions.c.owner == owner
                )
            )
            if owned is None:
                raise NotFound("session not found")
            conn.execute(
                sa.insert(shares).values(
                    id=share_id,
                    token_hash=hash_refresh_token(token),
                    session_id=session_id,
                    label=label,
                    created_at=now,
                    expires_at=expires,
                )
            )

        await self.db.write(tx)
        return Share(share_id, session_id, owner, label, now, expires, None), token

    async def list(self, session_id: str, owner: str) -> list[Share]:
        """The session's links that were not revoked (expired ones too: the owner sees that
        they expired), oldest first."""

        def read(conn: sa.Connection) -> list[Share]:
            owned = conn.scalar(
                sa.select(sessions.c.id).where(
                    sessions.c.id == session_id, sessions.c.owner == owner
                )
            )
            if owned is None:
                raise NotFound("session not found")
            q = _JOINED.where(shares.c.session_id == session_id, shares.c.revoked_at.is_(None))
            return [_share(r) for r in conn.execute(q.order_by(shares.c.created_at, shares.c.id))]

        return await self.db.read(read)

    async def revoke(self, share_id: str, owner: str) -> Share:
        """Revoke the owner's link (again: no change). Another user's link is not found."""
        now = time.time()

        def tx(conn: sa.Connection) -> Share:
            row = conn.execute(
                _JOINED.where(shares.c.id == share_id, sessions.c.owner == owner)
            ).first()
            if row is None:
                raise NotFound("share link not found")
            conn.execute(
                sa.update(shares)
                .where(shares.c.id == share_id, shares.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return _share(row)

        return await self.db.write(tx)

    async def by_token(self, token: str) -> Share:
        """The link the token opens, if it still reads; else Unauthorized saying why."""
        q = _JOINED.where(shares.c.token_hash == hash_refresh_token(token))
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            raise Unauthorized(f"unknown share link: {ENDED}")
        share = _share(row)
        reason = share.ended(time.time())
        if reason is not None:
            raise Unauthorized(reason)
        return share

    async def still_valid(self, share_id: str) -> str | None:
        """None while the link reads, else why it no longer does (streams ask this at each
        heartbeat: a revocation in another process ends them by then at the latest)."""
        q = _JOINED.where(shares.c.id == share_id)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            return f"this share link was revoked: {ENDED}"
        return _share(row).ended(time.time())
