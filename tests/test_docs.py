"""The docs are tested: every setting is documented, the README's commands are the CI's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.server import Server
from tether.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", readme, flags=re.M))
    assert documented == set(Settings.model_fields)


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    commands = [line.split("#")[0].strip() for line in block]
    assert commands == ["./dev serve", "./dev test"]
    assert "exec ./dev test\n" in (ROOT / ".ci" / "run").read_text()


def test_every_module_the_readme_names_as_a_promises_home_exists() -> None:
    """The map in "Where each promise lives" names real modules (it goes stale otherwise)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Where each promise lives", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:tether/)?[a-z_]+(?:/[a-z_]+)*\.(?:py|js))`", section))
    assert len(named) > 30
    missing = {
        n
        for n in named
        if not (ROOT / n).exists()
        and not (ROOT / "tether" / n).exists()
        and not (ROOT / "tether" / "web" / "static" / n.removeprefix("web/static/")).exists()
    }
    assert not missing, f"the README names modules that do not exist: {sorted(missing)}"


def test_serve_help_names_the_env_vars() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tether.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    for name in ("TETHER_HOST", "TETHER_PORT", "TETHER_DATA_DIR"):
        assert name in out


def test_openapi_lists_every_route(shared_server: Server) -> None:
    with shared_server.client() as c:
        assert c.get("/docs").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
    assert {
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/tasks",
        "/api/sessions/{session_id}/events",
        "/api/sessions/{session_id}/stream",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/cancel",
        "/api/agents",
        "/api/sessions/{session_id}/messages",
        "/api/tasks/{task_id}/approvals",
        "/api/tasks/{task_id}/approvals/{approval_id}",
        "/api/tasks/{task_id}/regenerate",
        "/api/tasks/{task_id}/select",
    } <= set(paths)


def test_the_readme_agents_file_is_one_tether_takes(tmp_path: Path) -> None:
    from tether.llm import config

    readme = (ROOT / "README.md").read_text()
    example = readme.split("## Model agents", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "agents.toml"
    path.write_text(example)
    agents = {a.name: a for a in config.load(path)}
    assert agents["assistant"].delegates == ["researcher"]
    assert agents["assistant"].needs_approval("write_file")
    assert not agents["assistant"].needs_approval("fetch")
    assert agents["researcher"].key_env == "LOCAL_MODEL_KEY"


def test_serve_creates_the_data_dir_and_prints_the_url(tmp_path: Path) -> None:
    d = tmp_path / "fresh" / "nested"
    s = Server(d)
    try:
        d.parent.mkdir()  # for the server's log file only; the data dir itself is new
        s.start()
        assert (d / "tether.db").exists()
        assert f"http://127.0.0.1:{s.port}/" in s.log()
    finally:
        s.stop()
