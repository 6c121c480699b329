"""A fresh database on the local Postgres for one test, dropped after it.

Postgres is part of the suite: when it cannot be reached a test that needs it fails under
CI (the `CI` variable set) and is skipped elsewhere, saying how to start it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ADMIN = os.environ.get("TETHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> object:
    import psycopg

    try:
        return psycopg.connect(
            PG_ADMIN.replace("postgresql+psycopg", "postgresql"), autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as e:
        why = f"Postgres is needed at {PG_ADMIN} ({e}); start it (see the env notes) or set TETHER_TEST_PG"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it (and its connections) afterwards."""
    name = f"tether_t_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    with admin:  # type: ignore[attr-defined]
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = _admin()
        with admin:  # type: ignore[attr-defined]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]


def shared_env(url: str, **more: str) -> dict[str, str]:
    """What every Tether process on one shared database starts with (the secrets it needs)."""
    return {"TETHER_DATABASE_URL": url, "TETHER_JWT_SECRET": "j" * 48, **more}
