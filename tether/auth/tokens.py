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
        return AccessClaims(str(claims["sub"]), str(claims["sid"]), float(claims["exp"]))


def new_refresh_token() -> tuple[str, str]:
    """A refresh token and the hash that is stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
