"""Tether on Postgres: what differs from the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.pg import fresh_database
from tests.helpers.server import ROOT, free_port


def test_a_server_on_postgres_refuses_to_start_without_shared_secrets(tmp_path: Path) -> None:
    # Each process would otherwise generate its own signing key and owner secret into its
    # own data dir, and a token from one API process would be refused by the next.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    with fresh_database() as url:
        for given, missing in (
            ({}, ["TETHER_JWT_SECRET", "TETHER_BOOTSTRAP_SECRET"]),
            ({"TETHER_JWT_SECRET": "k" * 48}, ["TETHER_BOOTSTRAP_SECRET"]),
        ):
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tether.cli",
                    "serve",
                    "--port",
                    str(free_port()),
                    "--data-dir",
                    str(tmp_path),
                ],
                env={**env, "PYTHONPATH": str(ROOT), "TETHER_DATABASE_URL": url, **given},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 2, r.stderr
            for name in missing:
                assert name in r.stderr
            assert "not starting" in r.stderr
            if "TETHER_JWT_SECRET" in given:
                assert "TETHER_JWT_SECRET" not in r.stderr
    assert not (tmp_path / "jwt.key").exists()  # nothing was generated on the way out
