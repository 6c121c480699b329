"""A verified access token is remembered until it expires, never after: an expired token is
refused although it was accepted before, and another token is judged on its own."""

from __future__ import annotations

import time

import pytest

from tether.auth.tokens import AccessTokens
from tether.errors import Unauthorized


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    tokens = AccessTokens("k" * 48, ttl_s=1)
    token, exp = tokens.issue("u", "a1")
    assert tokens.verify(token).auth_session_id == "a1"
    assert tokens.verify(token).auth_session_id == "a1"  # remembered
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthorized):
        tokens.verify(forged)
    with pytest.raises(Unauthorized):
        AccessTokens("x" * 48, ttl_s=1).verify(token)  # another key never trusts it
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)
