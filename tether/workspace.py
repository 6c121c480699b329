"""A session's workspace: the files its agents read and write, kept in the database.

Every process on a shared database sees the same files: a turn run by one worker finds what
the last turn wrote on another, and a turn moved to another worker after a crash finds its
own. Nothing is on a disk an agent names, so no path, link or `..` can reach outside it.

Paths are the workspace's own, normalized: relative, `/`-separated, no empty, `.` or `..`
part left, at most 1,024 bytes (255 a part), no NUL or other control character. A path is a
file or a folder (the parts before a file's name), never both. Deleting a session deletes its
files (store.delete_session).
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from tether.db.engine import Database
from tether.db.schema import files, sessions

MAX_PATH = 1024
MAX_PART = 255


class PathRefused(ValueError):
    """The path or the write is not allowed; the message says why, in a model's words."""


def normalize(path: str) -> str:
    """The workspace's name for `path`, or PathRefused. `a/./b`, `a//b` and `a/x/../b` are
    `a/b`; a path that leaves the workspace (`../x`, `/etc/x`) is refused, as today's disk
    rule refused it."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise PathRefused(f"{path!r} holds a control character")
    if path.startswith("/"):
        raise PathRefused(f"{path!r} is outside the workspace")
    norm = posixpath.normpath(path) if path else "."
    if norm == "..":
        raise PathRefused(f"{path!r} is outside the workspace")
    if norm.startswith("../"):
        raise PathRefused(f"{path!r} is outside the workspace")
    if norm == ".":
        raise PathRefused("give a file name")
    if len(norm.encode()) > MAX_PATH or any(len(p.encode()) > MAX_PART for p in norm.split("/")):
        raise PathRefused(f"a path holds at most {MAX_PATH} bytes, {MAX_PART} a part")
    return norm


def _folder_range(path: str) -> sa.ColumnElement[bool]:
    # Every path under `path/`: from "path/" up to "path0" ("0" follows "/"), an index range.
    return sa.and_(files.c.path >= path + "/", files.c.path < path + "0")


@dataclass(frozen=True, slots=True)
class Workspace:
    db: Database
    session_id: str

    def _where(self) -> sa.ColumnElement[bool]:
        return files.c.session_id == self.session_id

    async def read(self, path: str) -> bytes | None:
        """The file's content, or None if there is no such file."""
        p = normalize(path)
        q = sa.select(files.c.data).where(self._where(), files.c.path == p)
        data = await self.db.read(lambda c: c.execute(q).scalar())
        return None if data is None else bytes(data)

    async def write(self, path: str, data: bytes) -> None:
        """Create or replace the file, whole or not at all (a re-run writes it again)."""
        p = normalize(path)
        parents = [p[:i] for i, ch in enumerate(p) if ch == "/"]

        def tx(c: sa.Connection) -> None:
            if parents:
                clash = c.execute(
                    sa.select(files.c.path).where(self._where(), files.c.path.in_(parents))
                ).scalar()
                if clash is not None:
                    raise PathRefused(f"{clash!r} is a file, not a folder")
            inside = c.execute(
                sa.select(files.c.path).where(self._where(), _folder_range(p)).limit(1)
            ).scalar()
            if inside is not None:
                raise PathRefused(f"{p!r} is a folder")
            c.execute(sa.delete(files).where(self._where(), files.c.path == p))
            c.execute(
                sa.insert(files).values(
                    session_id=self.session_id,
                    path=p,
                    size=len(data),
                    data=data,
                    updated_at=time.time(),
                )
            )

        await self.db.write(tx)

    async def list(self) -> list[tuple[str, int]]:
        """Every file, as (path, size), in path order."""
        q = sa.select(files.c.path, files.c.size).where(self._where()).order_by(files.c.path)
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [(p, int(n)) for p, n in rows]


async def import_from_disk(db: Database, data_dir: Path) -> int:
    """Bring the files an earlier version kept in `<data_dir>/workspaces/<session>/` into
    the database (regular files only, at most 1 MiB each, a file already there is kept),
    then rename the folder `workspaces.imported`. Returns how many files came in."""
    root = data_dir / "workspaces"
    if not root.is_dir():
        return 0
    q = sa.select(sessions.c.id)
    known = set(await db.read(lambda c: c.execute(q).scalars().all()))
    n = 0
    for folder in sorted(root.iterdir()):
        if folder.name not in known or folder.is_symlink() or not folder.is_dir():
            continue
        ws = Workspace(db, folder.name)
        have = {p for p, _ in await ws.list()}
        for f in sorted(folder.rglob("*")):
            if f.is_symlink() or not f.is_file() or f.stat().st_size > 1 << 20:
                continue
            rel = f.relative_to(folder).as_posix()
            try:
                if normalize(rel) in have:
                    continue
                await ws.write(rel, f.read_bytes())
                n += 1
            except PathRefused:
                continue
    root.rename(root.with_name(f"workspaces.imported-{int(time.time())}"))
    return n
