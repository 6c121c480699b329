"""Ids of the rows Tether creates: a prefix naming the noun and 16 random hex digits."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"
