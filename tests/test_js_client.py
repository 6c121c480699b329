"""Runs the browser client module's own tests (node's test runner, against real servers)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.helpers.server import ROOT


def test_client_module_under_node() -> None:
    node = shutil.which("node")
    assert node, "node is needed for the client module's tests (./dev test installs it)"
    out = subprocess.run(
        [node, "--test", "tests/js/"],
        cwd=ROOT,
        env={**os.environ, "TETHER_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = [
        line for line in out.stdout.splitlines() if line.startswith(("# pass", "# fail", "not ok"))
    ]
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "# fail 0" in summary and any(
        line.startswith("# pass") and line != "# pass 0" for line in summary
    )
