"""Who is calling: bearer access tokens, the bootstrap secret, passwords, refresh.

Auth backends in the datasette manner: no credentials → Unauthorized that says how to sign
in; credentials that are ours but wrong → Unauthorized (and, for secrets and passwords, a
counted failure, so guessing is rate-limited per client address).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from tether.auth.limiter import FailureLimiter, SharedFailures
from tether.auth.passwords import verify_password
from tether.auth.secrets import load_or_create, same
from tether.auth.sessions import OWNER_ID, AuthStore, Rotation, SignInRevoked, User
from tether.auth.shares import Share, ShareStore, is_share_token
from tether.auth.tokens import SIGN_IN, AccessTokens
from tether.db.engine import Database
from tether.errors import Forbidden, Unauthorized
from tether.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    auth_session_id: str | None = None  # None: the bootstrap secret, sent with the request
    access_expires_at: float | None = None
    # A share link's reader: `user` is the session's owner, `auth_session_id` the link's
    # `principal_id`, and only `web/deps.Reader` routes, for `share.session_id`, accept it.
    share: Share | None = None


@dataclass(frozen=True, slots=True)
class SignIn:
    user: User
    rotation: Rotation
    access_token: str
    access_expires_at: float


class Authenticator:
    def __init__(self, settings: Settings, db: Database) -> None:
        d = settings.data_dir
        self.bootstrap_secret = load_or_create(d / "bootstrap_secret", settings.bootstrap_secret)
        key = load_or_create(d / "jwt.key", settings.jwt_secret, nbytes=48)
        self.tokens = AccessTokens(key, settings.access_ttl_s)
        self.store = AuthStore(
            db,
            idle_timeout_s=settings.idle_timeout_s,
            lifetime_s=settings.session_lifetime_s,
            grace_s=settings.refresh_grace_s,
        )
        self.shares = ShareStore(db)
        self.limiter = FailureLimiter(settings.auth_max_failures, settings.auth_failure_window_s)
        # On a shared database the other processes' failures count too.
        self.shared = (
            None
            if db.sqlite
            else SharedFailures(db, settings.auth_max_failures, settings.auth_failure_window_s)
        )
        self._valid_until: dict[str, float] = {}
        self._checking: dict[str, asyncio.Future[str | None]] = {}
        # Told (auth session id, reason) when a sign-in ends here: open streams close at once.
        self.on_sign_in_ended: list[Callable[[str, str], None]] = []
        # Told only of sign-ins ended by this process (to tell the other processes).
        self.on_sign_in_ended_here: list[Callable[[str, str], None]] = []

    async def _shared_check(self, address: str) -> None:
        if self.shared is not None:
            await self.shared.check(address)

    async def _failed(self, address: str) -> None:
        if self.shared is not None:
            await self.shared.failed(address)

    async def check_secret(self, given: str, address: str) -> None:
        await self._shared_check(address)
        # Judged and (if wrong) counted with no await in between: a right secret waiting on
        # the database is never a failure, and concurrent guesses each see the ones before.
        attempt = self.limiter.attempt(address)
        if not same(given, self.bootstrap_secret):
            attempt.failed()
            await self._failed(address)
            raise Unauthorized("wrong bootstrap secret: " + SIGN_IN)

    async def authenticate(
        self, authorization: str | None, secret: str | None, address: str
    ) -> Principal:
        # A bearer token, when sent, decides: a bad one is refused even next to a good secret.
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send `Authorization: Bearer <access token>`: " + SIGN_IN)
            if is_share_token(token.strip()):
                raise Forbidden(
                    "a share link only reads the session it was made for (its conversation, "
                    "events and tasks)"
                )
            claims = self.tokens.verify(token.strip())
            reason = await self.still_valid_sid(claims.auth_session_id)
            if reason is not None:
                raise Unauthorized(reason)
            return Principal(claims.user_id, claims.auth_session_id, claims.expires_at)
        if secret is not None:
            await self.check_secret(secret, address)
            return Principal(OWNER_ID)
        raise Unauthorized(
            "no credentials: " + SIGN_IN + " (or send the x-web-bootstrap-secret header)"
        )

    async def share_reader(self, token: str) -> Principal:
        """The reader a share link's token makes, if the link still reads; else Unauthorized
        saying why (revoked, expired, unknown)."""
        share = await self.shares.by_token(token)
        return Principal(share.owner, share.principal_id, share.expires_at, share)

    async def sign_in(
        self,
        *,
        secret: str | None,
        username: str | None,
        password: str | None,
        address: str,
    ) -> SignIn:
        if secret is not None:
            await self.check_secret(secret, address)
            user = await self.store.user(OWNER_ID)
        elif username is not None and password is not None:
            # The check awaits (argon2): concurrent attempts take turns, at most as many in
            # flight as the address has failures left.
            async with self.limiter.turn(address) as attempt:
                await self._shared_check(address)
                found = await self.store.user_by_name(username)
                if not await verify_password(found.password_hash if found else None, password):
                    attempt.failed()
                    await self._failed(address)
                    raise Unauthorized("wrong user name or password")
            assert found is not None
            user = found
        else:
            raise Unauthorized(
                'POST /auth takes {"secret"} (or the x-web-bootstrap-secret header), '
                'or {"username", "password"}'
            )
        rotation = await self.store.open(user.id)
        token, exp = self.tokens.issue(user.id, rotation.auth_session_id)
        return SignIn(user, rotation, token, exp)

    async def refresh(self, refresh_token: str | None) -> SignIn:
        if not refresh_token:
            raise Unauthorized("no refresh token cookie: " + SIGN_IN)
        try:
            rotation = await self.store.rotate(refresh_token)
        except SignInRevoked as exc:
            self.ended(exc.auth_session_id, "refresh token reuse detected")
            raise
        user = await self.store.user(rotation.user_id)
        token, exp = self.tokens.issue(user.id, rotation.auth_session_id)
        return SignIn(user, rotation, token, exp)

    async def still_valid(self, principal: Principal) -> str | None:
        """None while the caller's auth session holds, else why it ended. For open streams:
        the token that opened a stream may age out; the sign-in behind it may not."""
        if principal.share is not None:
            return await self.shares.still_valid(principal.share.id)
        sid = principal.auth_session_id
        if sid is None:
            return None
        return await self.still_valid_sid(sid)

    def ended(self, auth_session_id: str, reason: str) -> None:
        """This process just ended the sign-in: drop the cached verdict, close its streams."""
        self.end(auth_session_id, f"signed out ({reason}): " + SIGN_IN)

    def end(self, principal_id: str, message: str) -> None:
        """A sign-in or a share link (its `principal_id`) ended in this process: its streams
        close, here and in the other processes on a shared database."""
        self.close_sign_in(principal_id, message)
        for listener in self.on_sign_in_ended_here:
            listener(principal_id, message)

    def close_sign_in(self, auth_session_id: str, message: str) -> None:
        """A sign-in ended, here or in another process on the shared database: drop its
        cached verdict and close its streams in this process."""
        self._valid_until.pop(auth_session_id, None)
        for listener in self.on_sign_in_ended:
            listener(auth_session_id, message)

    async def still_valid_sid(self, sid: str) -> str | None:
        now = time.monotonic()
        if self._valid_until.get(sid, 0.0) > now:
            return None
        # The requests and streams of one sign-in whose cached verdict ran out together (a
        # thousand heartbeats in the same second, a storm of reconnects) wait on one check,
        # not on a database read each.
        checking = self._checking.get(sid)
        if checking is None:
            checking = self._checking[sid] = asyncio.ensure_future(self._check(sid, now))
            checking.add_done_callback(lambda _: self._checking.pop(sid, None))
        # Shielded: a caller that stops waiting does not cancel the others' check.
        return await asyncio.shield(checking)

    async def _check(self, sid: str, now: float) -> str | None:
        try:
            await self.store.check(sid)
        except Unauthorized as exc:
            self._valid_until.pop(sid, None)
            return exc.detail
        # Many requests and streams share one sign-in: check it at most once a second
        # (a revocation elsewhere takes effect within that second).
        self._valid_until[sid] = now + 1.0
        if len(self._valid_until) > 50_000:
            self._valid_until = {k: v for k, v in self._valid_until.items() if v > now}
        return None
