"""What importing a module loads, read in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.server import ROOT

# The server's dependencies: a client (the SDK, the terminal commands) loads none of them.
SERVER = {
    "fastapi", "starlette", "sqlalchemy", "alembic", "dbos", "uvicorn", "jwt", "argon2",
    "pydantic_ai", "psycopg", "aiosqlite",
}  # fmt: skip


def loaded(module: str) -> list[str]:
    """The modules `import module` loads, by full name."""
    code = f"import json, sys, {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return list(json.loads(out.stdout))


def server_modules(module: str) -> list[str]:
    """The server's dependencies `import module` loads (top-level names)."""
    return sorted({m.split(".")[0] for m in loaded(module)} & SERVER)
