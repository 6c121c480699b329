"""Debian's nginx, run with the deployment guide's own config, in front of test servers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import ROOT, free_port, wait_until


def nginx_binary() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not exe:
        why = "Debian's nginx is needed (./dev test installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return exe


def guide_config() -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    return re.search(r"```nginx\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


@contextmanager
def nginx_in_front(tmp_path: Path, upstreams: str) -> Iterator[str]:
    """Debian's nginx running the guide's config with `upstreams` as its server lines."""
    port = free_port()
    site = guide_config().replace("server 127.0.0.1:8765;", upstreams)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log warn;\nworker_rlimit_nofile 16384;\n"
        "events { worker_connections 8192; }\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path}/body;\n"
        f"proxy_temp_path {tmp_path}/proxy;\nfastcgi_temp_path {tmp_path}/fcgi;\n"
        f"uwsgi_temp_path {tmp_path}/uwsgi;\nscgi_temp_path {tmp_path}/scgi;\n{site}\n}}\n"
    )
    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def up(probe: httpx.Client) -> bool:
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        try:
            return probe.get(f"{url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        # One client for the whole wait (a new one per poll costs ~20 ms of CPU).
        with httpx.Client(timeout=1) as probe:
            wait_until(lambda: up(probe), timeout=20, what="nginx to proxy /healthz")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
