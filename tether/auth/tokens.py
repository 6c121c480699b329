"""Access tokens (short-lived JWTs) and refresh tokens (opaque, stored hashed)."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass

import jwt

from tether.errors import Unauthorized

ALGORITHM = "HS256"
_VERIFIED_MAX = 10_000
SIGN_IN = "sign in again from the URL `tether serve` printed, or POST /auth"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    auth_session_id: str
    expires_at: float


class AccessTokens:
    def __init__(self, key: str, ttl_s: float) -> None:
        self._key = key
        self.ttl_s = ttl_s
        # Tokens already verified, until they expire: a client sends the same token with
        # every request and reconnect until it refreshes, and decoding one (PyJWT's key
        # preparation and HMAC) was 8 % of the event loop in a reconnect storm. Whether
        # the sign-in behind it still holds is checked apart (Authenticator.still_valid_sid).
        self._verified: dict[str, AccessClaims] = {}

    def issue(self, user_id: str, auth_session_id: str) -> tuple[str, float]:
        now = time.time()
        # Whole seconds: PyJWT truncates `exp` when it checks it, so a fractional expiry
        # would make a token die up to a second before the time we report.
        exp = float(math.ceil(now + self.ttl_s))
        token = jwt.encode(
            {
                "sub": user_id,
                "sid": auth_session_id,
                "iat": int(now),
                "exp": exp,
                "jti": secrets.token_hex(8),
            },
            self._key,
            algorithm=ALGORITHM,
        )
        return token, exp

    def verify(self, token: str) -> AccessClaims:
        known = self._verified.get(token)
        # `exp` is whole seconds: valid while now < exp, as PyJWT judges it.
        if known is not None and time.time() < known.expires_at:
            return known
        try:
            # Only our algorithm: a token claiming "none" or another algorithm is refused.
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "sid"]}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(
                "the access token has expired: refresh it with POST /auth/refresh, or " + SIGN_IN
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the access token is invalid ({exc}): " + SIGN_IN) from None
        verified = AccessClaims(str(claims["sub"]), str(claims["sid"]), float(claims["exp"]))
        if len(self._verified) >= _VERIFIED_MAX:
            now = time.time()
            self._verified = {t: c for t, c in self._verified.items() if now < c.expires_at}
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
        self._verified[token] = verified
        return verified


def new_refresh_token() -> tuple[str, str]:
    """A refresh token and the hash that is stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
