"""Users, auth sessions and refresh-token rotation, in the database. (A session of tasks
and events, what the API calls a session, is `tether.db.sessions`.)

An auth session is one sign-in (one rotation family of refresh tokens). It ends when it is
revoked (logout, refresh-token reuse), when it reaches its absolute lifetime, or when it has
been idle for the idle timeout — where "idle" never counts time during which one of its
user's tasks was running: the clock restarts when the user's last task ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tether.auth.tokens import SIGN_IN, hash_refresh_token, new_refresh_token
from tether.db.engine import Database
from tether.db.ids import new_id
from tether.db.schema import auth_sessions, refresh_tokens, sessions, tasks, users
from tether.errors import InvalidInput, Unauthorized
from tether.model import TERMINAL_VALUES

OWNER_ID = "owner"


class SignInRevoked(Unauthorized):
    """The request revoked the sign-in (refresh-token reuse). Its id is kept off the wire."""

    def __init__(self, detail: str, auth_session_id: str) -> None:
        super().__init__(detail)
        self.auth_session_id = auth_session_id


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    password_hash: str | None


@dataclass(frozen=True, slots=True)
class AuthSession:
    id: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Rotation:
    user_id: str
    auth_session_id: str
    refresh_token: str
    expires_at: float


class AuthStore:
    def __init__(
        self,
        db: Database,
        *,
        idle_timeout_s: float,
        lifetime_s: float,
        grace_s: float,
    ) -> None:
        self.db = db
        self.idle_timeout_s = idle_timeout_s
        self.lifetime_s = lifetime_s
        self.grace_s = grace_s
        # Refresh last_seen at most this often, so a busy client is not a write per request.
        self.touch_every_s = min(60.0, idle_timeout_s / 4)

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, name: str, password_hash: str) -> User:
        if not name or len(name) > 128 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput("a user name is 1-128 letters, digits, '-' or '_'")
        user = User(new_id("u"), name, password_hash)

        def tx(conn: sa.Connection) -> None:
            taken = conn.scalar(sa.select(users.c.id).where(users.c.name == name))
            if taken is not None:
                raise InvalidInput(f"user {name!r} already exists")
            conn.execute(
                sa.insert(users).values(
                    id=user.id, name=name, password_hash=password_hash, created_at=time.time()
                )
            )

        await self.db.write(tx)

        return user

    async def user_by_name(self, name: str) -> User | None:
        q = sa.select(users).where(users.c.name == name)
        row = await self.db.read(lambda c: c.execute(q).first())
        return None if row is None else User(row.id, row.name, row.password_hash)

    async def user(self, user_id: str) -> User:
        q = sa.select(users).where(users.c.id == user_id)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            raise Unauthorized("this user no longer exists: " + SIGN_IN)
        return User(row.id, row.name, row.password_hash)

    # -- auth sessions ---------------------------------------------------------------------

    async def open(self, user_id: str) -> Rotation:
        """A new auth session and its first refresh token."""
        now = time.time()
        sid = new_id("a")
        token, digest = new_refresh_token()
        expires = now + self.lifetime_s

        def tx(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(auth_sessions).values(
                    id=sid, user_id=user_id, created_at=now, last_seen_at=now, expires_at=expires
                )
            )
            conn.execute(
                sa.insert(refresh_tokens).values(
                    token_hash=digest, auth_session_id=sid, created_at=now
                )
            )

        await self.db.write(tx)

        return Rotation(user_id, sid, token, expires)

    async def rotate(self, token: str) -> Rotation:
        """Trade a refresh token for a new one. A token already traded is accepted again for
        `grace_s` (two tabs refreshing at once); after that, its reuse means it was stolen,
        and the whole auth session is revoked."""
        now = time.time()

        def tx(conn: sa.Connection) -> tuple[sa.Row[Any], str | None]:
            row = conn.execute(
                sa.select(refresh_tokens)
                .where(refresh_tokens.c.token_hash == hash_refresh_token(token))
                .with_for_update()
            ).first()
            if row is None:
                raise Unauthorized("unknown refresh token: " + SIGN_IN)
            session = self._session_row(conn, row.auth_session_id)
            self._raise_if_ended(conn, session, now)
            if row.used_at is not None and now - row.used_at > self.grace_s:
                self._revoke(conn, session.id, "refresh token reuse detected", now)
                return session, None
            if row.used_at is None:
                conn.execute(
                    sa.update(refresh_tokens)
                    .where(refresh_tokens.c.token_hash == row.token_hash)
                    .values(used_at=now)
                )
            new_token, digest = new_refresh_token()
            conn.execute(
                sa.insert(refresh_tokens).values(
                    token_hash=digest, auth_session_id=session.id, created_at=now
                )
            )
            conn.execute(
                sa.update(auth_sessions)
                .where(auth_sessions.c.id == session.id)
                .values(last_seen_at=now)
            )
            return session, new_token

        session, new_token = await self.db.write(tx)
        if new_token is None:
            # Raised after the commit, so the revocation stands.
            raise SignInRevoked(
                "this refresh token was already used: the sign-in is revoked for safety; "
                + SIGN_IN,
                session.id,
            )
        return Rotation(session.user_id, session.id, new_token, session.expires_at)

    async def revoke(self, auth_session_id: str, reason: str) -> None:
        def tx(conn: sa.Connection) -> None:
            self._revoke(conn, auth_session_id, reason, time.time())

        await self.db.write(tx)

    async def revoke_by_token(self, token: str, reason: str) -> str | None:
        """Revoke the sign-in a refresh token belongs to; returns its id (None if unknown)."""

        def tx(conn: sa.Connection) -> str | None:
            sid = conn.scalar(
                sa.select(refresh_tokens.c.auth_session_id).where(
                    refresh_tokens.c.token_hash == hash_refresh_token(token)
                )
            )
            if sid is not None:
                self._revoke(conn, sid, reason, time.time())
            return sid

        return await self.db.write(tx)

    async def check(self, auth_session_id: str) -> AuthSession:
        """The auth session if it is still valid, else Unauthorized saying why."""
        now = time.time()
        q = sa.select(auth_sessions).where(auth_sessions.c.id == auth_session_id)
        row = await self.db.read(lambda c: c.execute(q).first())
        if row is None:
            raise Unauthorized("unknown sign-in: " + SIGN_IN)
        if now - row.last_seen_at > self.idle_timeout_s:  # idle: is a task of theirs running?
            await self.db.read(lambda c: self._raise_if_ended(c, row, now))
        else:
            self._raise_if_ended(None, row, now)
        if now - row.last_seen_at > self.touch_every_s:

            def tx(conn: sa.Connection) -> None:
                conn.execute(
                    sa.update(auth_sessions)
                    .where(auth_sessions.c.id == auth_session_id)
                    .values(last_seen_at=now)
                )

            await self.db.write(tx)
        return AuthSession(row.id, row.user_id, row.created_at, now, row.expires_at)

    @staticmethod
    def _session_row(conn: sa.Connection, sid: str) -> sa.Row[Any]:
        row = conn.execute(sa.select(auth_sessions).where(auth_sessions.c.id == sid)).first()
        if row is None:
            raise Unauthorized("unknown sign-in: " + SIGN_IN)
        return row

    def _raise_if_ended(self, conn: sa.Connection | None, row: sa.Row[Any], now: float) -> None:
        """Unauthorized saying why, if this sign-in has ended. Needs a connection only for one
        idle past the timeout (whether a task of its user still runs)."""
        if row.revoked_at is not None:
            raise Unauthorized(f"signed out ({row.revoked_reason}): " + SIGN_IN)
        if now >= row.expires_at:
            raise Unauthorized("this sign-in reached its maximum lifetime: " + SIGN_IN)
        if now - row.last_seen_at > self.idle_timeout_s:
            assert conn is not None
            busy, last_end = self._activity(conn, row.user_id)
            if not busy and (last_end is None or now - last_end > self.idle_timeout_s):
                raise Unauthorized("this sign-in was idle too long: " + SIGN_IN)

    async def prune(self, now: float | None = None) -> tuple[int, int]:
        """Delete sign-ins that have ended (revoked over an hour ago, past their lifetime, or
        idle past the timeout with no task of their user running) with their refresh tokens,
        and refresh tokens spent over a day ago. Returns (sign-ins, tokens) removed."""
        now = time.time() if now is None else now
        ended = sa.or_(
            sa.and_(
                auth_sessions.c.revoked_at.is_not(None), auth_sessions.c.revoked_at < now - 3600
            ),
            auth_sessions.c.expires_at <= now,
        )
        idle_q = sa.select(auth_sessions.c.id, auth_sessions.c.user_id).where(
            auth_sessions.c.revoked_at.is_(None),
            auth_sessions.c.last_seen_at < now - self.idle_timeout_s,
        )
        gone = list(
            await self.db.read(
                lambda c: [r[0] for r in c.execute(sa.select(auth_sessions.c.id).where(ended))]
            )
        )
        idle = await self.db.read(lambda c: [tuple(r) for r in c.execute(idle_q)])
        verdicts: dict[str, bool] = {}
        for sid, user_id in idle:
            if user_id not in verdicts:
                busy, last_end = await self.activity(user_id)
                verdicts[user_id] = not busy and (
                    last_end is None or now - last_end > self.idle_timeout_s
                )
            if verdicts[user_id]:
                gone.append(sid)

        def tx(conn: sa.Connection) -> int:
            tokens = 0
            for i in range(0, len(gone), 500):
                chunk = gone[i : i + 500]
                res = conn.execute(
                    sa.delete(refresh_tokens).where(refresh_tokens.c.auth_session_id.in_(chunk))
                )
                tokens += res.rowcount or 0
                conn.execute(sa.delete(auth_sessions).where(auth_sessions.c.id.in_(chunk)))
            res = conn.execute(
                sa.delete(refresh_tokens).where(
                    refresh_tokens.c.used_at.is_not(None), refresh_tokens.c.used_at < now - 86400
                )
            )
            return tokens

        return len(gone), await self.db.write(tx)

    async def activity(self, user_id: str) -> tuple[bool, float | None]:
        """Whether the user has a task that has not ended, and when their last one ended."""
        return await self.db.read(lambda c: self._activity(c, user_id))

    @staticmethod
    def _activity(c: sa.Connection, user_id: str) -> tuple[bool, float | None]:
        owned = sa.select(sessions.c.id).where(sessions.c.owner == user_id)
        busy = c.scalar(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.session_id.in_(owned), tasks.c.status.not_in(TERMINAL_VALUES))
        )
        last_end = c.scalar(
            sa.select(sa.func.max(tasks.c.ended_at)).where(tasks.c.session_id.in_(owned))
        )
        return bool(busy), last_end

    @staticmethod
    def _revoke(conn: sa.Connection, sid: str, reason: str, now: float) -> None:
        conn.execute(
            sa.update(auth_sessions)
            .where(auth_sessions.c.id == sid, auth_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
