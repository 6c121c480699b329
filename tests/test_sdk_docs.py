"""docs/sdk.md's examples are whole programs: each runs against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.server import ROOT, SECRET, Server

EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.S)


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("n", range(len(EXAMPLES)))
def test_an_example_runs(shared_server: Server, n: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", EXAMPLES[n]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TETHER_URL": shared_server.url,
            "TETHER_SECRET": SECRET,
        },
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip()
