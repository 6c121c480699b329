"""Per-user limits: how many streams, sessions and queued turns a user may hold, and how
much they may store (settings, "issue 26 limits"; the table is in docs/reliability.md).

Counts are read where they are cheap: sessions by the (owner, created_at) index, a user's
storage as the sum of their sessions' `used_bytes` (kept by the log writer in the commit
that writes the bytes) plus their workspace files, never by scanning the log. Open streams
are counted in the process that serves them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tether.db.schema import files, sessions
from tether.errors import QuotaExceeded, StorageQuotaExceeded
from tether.events.hub import Subscription
from tether.settings import Settings

log = logging.getLogger(__name__)

# The limits the model agents' turns read (set from the settings when the services start).
_limits = Settings.model_construct()


def configure(settings: Settings) -> None:
    global _limits
    _limits = settings


def limits() -> Settings:
    return _limits


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


# -- storage --------------------------------------------------------------------------------


def file_bytes(c: sa.Connection, owner: sa.ColumnElement[Any] | str) -> int:
    """The bytes of the files in the owner's sessions' workspaces."""
    q = (
        sa.select(sa.func.coalesce(sa.func.sum(files.c.size), 0))
        .select_from(files.join(sessions, sessions.c.id == files.c.session_id))
        .where(sessions.c.owner == owner)
    )
    return int(c.execute(q).scalar_one())


def storage_bytes(c: sa.Connection, owner: str) -> int:
    """What the owner's sessions store: events, steps and task rows (as counted by the log
    writer) and workspace files."""
    q = sa.select(sa.func.coalesce(sa.func.sum(sessions.c.used_bytes), 0)).where(
        sessions.c.owner == owner
    )
    return int(c.execute(q).scalar_one()) + file_bytes(c, owner)


def owner_of(c: sa.Connection, session_id: str) -> str | None:
    q = sa.select(sessions.c.owner).where(sessions.c.id == session_id)
    return c.execute(q).scalar_one_or_none()


def storage_full(used: int, limit: int) -> str | None:
    """Why nothing more may be stored (None: there is room)."""
    if not limit or used < limit:
        return None
    return (
        f"your sessions store {_mib(used)}, your storage quota is {_mib(limit)} "
        "(max_storage_bytes_per_user): delete sessions you no longer need to start new work"
    )


async def check_storage(db: Any, settings: Settings, owner: str) -> None:
    """507 once the owner's storage quota is used up."""
    limit = settings.max_storage_bytes_per_user
    if not limit:
        return
    used = await db.read(lambda c: storage_bytes(c, owner))
    if (why := storage_full(used, limit)) is not None:
        raise StorageQuotaExceeded(why, limit="max_storage_bytes_per_user", used=used, quota=limit)


# session -> (when it was read, why it is full): `recent` answers within RECENT_S.
_recent: dict[str, tuple[float, str | None]] = {}
RECENT_S = 0.2


async def session_storage_full(db: Any, session_id: str, *, recent: bool = False) -> str | None:
    """For running work: why its owner may store nothing more (None: there is room).
    `recent`: an answer read less than RECENT_S ago will do (a batch starting sub-agents
    one after another reads it a few times a second, not once for each)."""
    limit = _limits.max_storage_bytes_per_user
    if not limit:
        return None
    now = time.monotonic()
    if recent and (hit := _recent.get(session_id)) is not None and now - hit[0] < RECENT_S:
        return hit[1]

    def read(c: sa.Connection) -> int:
        owner = owner_of(c, session_id)
        return 0 if owner is None else storage_bytes(c, owner)

    why = storage_full(await db.read(read), limit)
    if len(_recent) > 10_000:
        _recent.clear()
    _recent[session_id] = (now, why)
    return why


# -- a full disk ----------------------------------------------------------------------------

RESERVE = "reserve"


def make_reserve(data_dir: Path, size: int) -> bool:
    """Keep `size` bytes of the disk in `data_dir/reserve` (if the disk has room for it and
    as much again): a delete on a full disk gets them back (`free_reserve`)."""
    path = data_dir / RESERVE
    if not size:
        path.unlink(missing_ok=True)
        return False
    try:
        if path.exists() and path.stat().st_size >= size:
            return True
        if shutil.disk_usage(data_dir).free < 2 * size:
            return False
        with path.open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, size)
        return True
    except OSError as exc:
        log.warning("could not keep a disk reserve in %s: %s", data_dir, exc)
        path.unlink(missing_ok=True)
        return False


def free_reserve(data_dir: Path) -> bool:
    """Give the reserve's room back to the disk; False if there was none."""
    try:
        (data_dir / RESERVE).unlink()
    except FileNotFoundError:
        return False
    log.warning("the disk is full: the reserve in %s was given back to delete a session", data_dir)
    return True


# -- counts ---------------------------------------------------------------------------------


async def check_sessions(db: Any, settings: Settings, owner: str) -> None:
    """429 when the owner has as many sessions as they may."""
    limit = settings.max_sessions_per_user
    if not limit:
        return
    q = sa.select(sa.func.count()).select_from(sessions).where(sessions.c.owner == owner)
    have = await db.read(lambda c: c.execute(q).scalar_one())
    if have >= limit:
        raise QuotaExceeded(
            f"you have {have} sessions, the most one user may have "
            f"(max_sessions_per_user = {limit}): delete some to create more",
            limit="max_sessions_per_user",
            retry_after=60,
        )


def check_queued_turns(unfinished: int, settings: Settings) -> None:
    """429 when the session already holds as many unfinished turns as it may."""
    limit = settings.max_queued_turns
    if limit and unfinished >= limit:
        raise QuotaExceeded(
            f"this conversation has {unfinished} messages still being answered or waiting, "
            f"the most it may hold (max_queued_turns = {limit}): wait for a reply, or stop one",
            limit="max_queued_turns",
            retry_after=5,
        )


# -- streams --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Slot:
    user: str
    auth_session_id: str | None
    session_id: str
    sub: Subscription
    owner: StreamSlots
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            held = self.owner.held.get(self.user)
            if held is not None:
                held.remove(self)
                if not held:
                    del self.owner.held[self.user]


@dataclass
class StreamSlots:
    """The open streams of each user in this process."""

    limit: int
    held: dict[str, list[_Slot]] = field(default_factory=dict)

    def count(self, user: str) -> int:
        return len(self.held.get(user, ()))

    def take(
        self, user: str, auth_session_id: str | None, session_id: str, sub: Subscription
    ) -> _Slot:
        """A slot for a new stream, or 429. At the limit, the oldest stream of the same
        sign-in on the same session is ended to make room: a page that reloads (or lost its
        connection without the server noticing yet) gets back in at once."""
        held = self.held.get(user, [])
        if self.limit and len(held) >= self.limit:
            stale = next(
                (
                    s
                    for s in held
                    if s.auth_session_id == auth_session_id and s.session_id == session_id
                ),
                None,
            )
            if stale is None:
                raise QuotaExceeded(
                    f"you have {len(held)} streams open, the most one user may "
                    f"(max_streams_per_user = {self.limit}): close a tab or two",
                    limit="max_streams_per_user",
                    retry_after=15,
                )
            stale.sub.end("replaced by a newer stream of this sign-in")
            stale.release()
        slot = _Slot(user, auth_session_id, session_id, sub, self)
        self.held.setdefault(user, []).append(slot)
        return slot

    def counted(self, slot: _Slot, body: AsyncIterator[str]) -> AsyncIterator[str]:
        """The stream's body, giving its slot back when it ends (or is dropped unstarted)."""

        async def run() -> AsyncIterator[str]:
            try:
                async for chunk in body:
                    yield chunk
            finally:
                slot.release()

        gen = run()
        weakref.finalize(gen, slot.release)
        return gen
