from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.server import Api, Server


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[callable]:
    """Factory: start real servers on fresh data dirs; all are killed at the end."""
    servers: list[Server] = []

    def make(data_dir: Path | None = None, **env: str) -> Server:
        d = data_dir or tmp_path / f"data{len(servers)}"
        d.mkdir(parents=True, exist_ok=True)
        s = Server(d, env=dict(env))
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for tests that only read and write their own sessions."""
    s = Server(tmp_path_factory.mktemp("shared"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def api(shared_server: Server) -> Iterator[Api]:
    with shared_server.client() as c:
        yield Api(c)
