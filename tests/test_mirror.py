"""The session mirror: a stream start served from memory is what the database holds, through
new tasks, status changes, refused appends, retention, a session that outgrows it, a
delete, and a kill -9 of the server."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers.server import Api, Server, sse_frames, wait_until
from tether.db.engine import Database
from tether.db.store import Store
from tether.errors import NotFound
from tether.events import mirror as mirror_module
from tether.events import reader
from tether.events.log import Append, EventLog
from tether.events.mirror import Mirror
from tether.model import TaskStatus, dumps
from tether.runtime.children import new_task_row
from tether.web.render import snapshot_text


@contextlib.asynccontextmanager
async def mirrored_log(path: Path, retention: int) -> AsyncIterator[tuple[EventLog, Mirror]]:
    """A log keeping `retention` events on a SQLite file, and a mirror that checks every
    answer against the database (and raises on a difference)."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    db.migrate()
    log = EventLog(db, retention=retention)
    log.mirror = Mirror(check=True)
    log.start()
    try:
        yield log, log.mirror
    finally:
        await log.stop()
        await db.close()


@pytest.fixture
async def mirrored(tmp_path: Path) -> AsyncIterator[tuple[EventLog, Mirror]]:
    async with mirrored_log(tmp_path / "log.db", retention=120) as pair:
        yield pair


async def start(log: EventLog, m: Mirror | None, sid: str, cursor: int, limit: int = 1000) -> Any:
    return await reader.stream_start(log.db, m, sid, "u", cursor, limit, 1000, 1.0, snapshot_text)


async def start_without_database(log: EventLog, m: Mirror, sid: str, cursor: int) -> Any:
    """A stream's start that fails if it reads the database."""

    async def no_database(*_: Any, **__: Any) -> Any:
        raise AssertionError("read the database")

    read, log.db.read = log.db.read, no_database  # type: ignore[method-assign]
    try:
        return await start(log, m, sid, cursor)
    finally:
        log.db.read = read  # type: ignore[method-assign]


class Work:
    """Random work on one session, as the runtime does it: tasks created (some under
    others), started, advanced, finished, events with and without a task, and appends the
    database refuses in the middle of a batch."""

    def __init__(self, log: EventLog, sid: str, rng: random.Random) -> None:
        self.log, self.sid, self.rng = log, sid, rng
        self.open: list[tuple[str, str | None]] = []  # unfinished tasks: (id, parent)
        self.n = 0
        self.keys: list[str] = []

    def _one(self) -> Append:
        rng, sid = self.rng, self.sid
        roll = rng.random()
        if roll < 0.15 or not self.open:
            self.n += 1
            parent = rng.choice(self.open)[0] if self.open and rng.random() < 0.5 else None
            tid = f"t{self.n}"
            self.open.append((tid, parent))
            row = new_task_row(tid, sid, parent, "agent", {"i": self.n}, "v")
            return Append(sid, tid, parent, "task.created", dumps({}), new_task=row)
        tid, parent = rng.choice(self.open)
        if roll < 0.3:
            status = rng.choice([TaskStatus.running, TaskStatus.completed, TaskStatus.failed])
            values: dict[str, Any] = {"started_at": 1.5} if status is TaskStatus.running else {}
            if status is TaskStatus.failed:
                values |= {"error": dumps({"type": "X", "message": "m" * rng.randint(0, 900)})}
            if status is not TaskStatus.running:
                values["ended_at"] = 2.5
                self.open.remove((tid, parent))
            return Append(
                sid, tid, parent, "task.status", dumps({"status": status.value}),
                status=status, task_values=values,
            )  # fmt: skip
        if roll < 0.5:
            n = rng.randint(0, 9)
            values = {"progress_n": n, "progress_m": 9}
            return Append(sid, tid, parent, "task.progress", dumps({"n": n}), task_values=values)
        key = f"k{len(self.keys)}"
        self.keys.append(key)
        task = None if roll < 0.6 else tid
        return Append(sid, task, None if task is None else parent, "note", dumps("x" * rng.randint(0, 3000)), key=key)  # fmt: skip

    async def batch(self) -> None:
        appends = [self._one() for _ in range(self.rng.randint(1, 12))]
        if self.keys and self.rng.random() < 0.2:
            # A key already in the log, marked fresh (not looked up): the unique index
            # refuses it, and the writer commits the rest of the batch without it.
            bad = Append(self.sid, None, None, "dup", "1", key=self.keys[0], fresh=True)
            appends.insert(self.rng.randrange(len(appends) + 1), bad)
        with contextlib.suppress(sa.exc.IntegrityError):  # the refused one's own error
            await self.log.append(*appends)


async def test_every_answer_from_memory_is_what_the_database_holds(
    mirrored: tuple[EventLog, Mirror],
) -> None:
    log, m = mirrored
    rng = random.Random(29)
    sid = (await Store(log.db).create_session("u", "")).id
    await start(log, m, sid, 0)  # read from the database; mirrored from here on
    assert sid in m
    work = Work(log, sid, rng)
    store = Store(log.db)
    for round_ in range(150):
        await work.batch()
        if round_ % 40 == 39:
            m.forget(sid)  # made again from a read, in the middle of the work
        if round_ % 50 == 25:  # one commit of more events than the mirror keeps
            await log.append(*(Append(sid, None, None, "n", dumps(i)) for i in range(300)))
        s = await store.session(sid, "u")
        for cursor in {s.head_seq, max(s.low_seq, s.head_seq - rng.randint(1, 300))}:
            for limit in (0, 1000):
                got = await start(log, m, sid, cursor, limit)  # raises if it differs
                assert got.session.head_seq == s.head_seq
    assert m.mismatches == 0
    assert m.hits > 300, (m.hits, m.misses)
    assert m.misses > 50  # cursors older than what it keeps, snapshots of too many tasks
    assert work.n > mirror_module.MIRROR_TASKS  # it outgrew the summaries the mirror keeps
    assert s.low_seq > 0  # retention pruned


async def test_a_start_from_memory_reads_no_database(mirrored: tuple[EventLog, Mirror]) -> None:
    log, m = mirrored
    m.check = False
    sid = (await Store(log.db).create_session("u", "")).id
    await log.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(5)))
    await start(log, m, sid, 0)
    await log.append(Append(sid, None, None, "tick", dumps(5)))

    got = await start_without_database(log, m, sid, 2)
    assert (got.first.first, got.first.last, got.more) == (3, 6, False)
    # Another user asking for it is told what the database says: not found.
    with pytest.raises(NotFound):
        await reader.stream_start(log.db, m, sid, "mallory", 6, 0, 1000, 1.0, snapshot_text)


async def test_a_replay_from_the_start_is_answered_from_memory_as_the_log_grows_and_is_pruned(
    tmp_path: Path,
) -> None:
    """A session longer than the newest events the mirror keeps: a stream from its first
    event gets its first page from memory (each answer checked against the database) while
    the session grows, after retention moves its start on, and after the mirror forgets it."""
    async with mirrored_log(tmp_path / "log.db", retention=700) as (log, m):
        rng = random.Random(30)
        store = Store(log.db)
        sid = (await store.create_session("u", "")).id
        await start(log, m, sid, 0)
        work = Work(log, sid, rng)
        from_start = 0
        for round_ in range(120):
            await work.batch()
            if round_ % 30 == 10:  # more than the ring at once: the start is older than it
                await log.append(*(Append(sid, None, None, "n", dumps(i)) for i in range(300)))
            if round_ % 50 == 49:
                m.forget(sid)
            s = await store.session(sid, "u")
            got = await start(log, m, sid, s.low_seq, 0)  # raises if memory and database differ
            assert got.first.first == s.low_seq + 1
            from_start += got.from_memory and got.more
        assert m.mismatches == 0
        assert s.low_seq > 0  # retention moved the start on, and the mirror followed
        assert from_start > 80, from_start


async def test_a_replay_from_the_start_reads_no_database_for_its_first_page(
    tmp_path: Path,
) -> None:
    async with mirrored_log(tmp_path / "log.db", retention=0) as (log, m):
        m.check = False
        sid = (await Store(log.db).create_session("u", "")).id
        await log.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(30)))
        await start(log, m, sid, 0)  # mirrored with a start page of 30: the commits fill it
        await log.append(*(Append(sid, None, None, "tick", dumps(i)) for i in range(30, 400)))
        got = await start_without_database(log, m, sid, 0)
        assert (got.first.first, got.first.last, got.more) == (1, reader.FIRST_PAGE, True)
        assert got.first.text == (await start(log, None, sid, 0)).first.text


async def test_a_commit_that_does_not_follow_the_mirror_drops_the_session(
    mirrored: tuple[EventLog, Mirror],
) -> None:
    log, m = mirrored
    sid = (await Store(log.db).create_session("u", "")).id
    await start(log, m, sid, 0)
    # The writer is told of a commit the mirror never saw the one before of: it forgets the
    # session rather than serve a hole, and the next start reads the database.
    await log.append(Append(sid, None, None, "tick", "1"))
    entry = m._entries[sid]
    entry.session.head_seq -= 1  # as if a commit had not reached it
    entry.ring.pop()
    await log.append(Append(sid, None, None, "tick", "2"))
    assert sid not in m
    got = await start(log, m, sid, 1)
    assert got.first.last == 2 and sid in m


def test_kill_9_leaves_no_mirror_out_of_step_with_the_log(make_server: Any) -> None:
    """Every stream start in the test servers is checked against the database (the stream
    fails on a difference); here streams reconnect again and again through a kill -9 and
    the run that resumes after it, and each sees the log exactly once."""
    server: Server = make_server()
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "batch", {"items": list(range(8)), "delay_s": 0.3})["id"]
    seen: list[int] = []
    from_memory: list[bool] = []

    def follow(until: int) -> None:
        with server.client(timeout=30) as c:
            for _ in range(until):
                last = seen[-1] if seen else 0
                with c.stream(
                    "GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(last)}
                ) as r:
                    assert r.status_code == 200, r.read()
                    from_memory.append(r.headers.get("X-Tether-Mirror") == "checked")
                    for f in sse_frames(r):
                        if f.event == "message":
                            seen.append(f.data["seq"])
                            if len(seen) % 3 == 0:
                                break  # a few events, then reconnect from the last
                        if f.event == "heartbeat":
                            break

    follow(12)
    server.kill()
    server.start()
    follow(8)
    api = Api(server.client())
    assert api.wait_status(root, "completed", "failed", timeout=60)["status"] == "completed"
    head = api.all_events(sid)[-1]["seq"]
    wait_until(lambda: follow(1) or seen[-1] == head, timeout=60, what="the last event")
    assert seen == sorted(set(seen)) == list(range(1, head + 1))
    assert "mirror differs" not in server.log()
    # Most reconnects were answered from memory (and matched the database); the first
    # after the restart could not be.
    assert sum(from_memory) > len(from_memory) // 2, from_memory
    assert from_memory[12] is False


async def test_a_deleted_session_is_not_answered_from_memory(
    mirrored: tuple[EventLog, Mirror],
) -> None:
    log, m = mirrored
    m.check = False  # the check's own read would say "not found"
    store = Store(log.db)
    sid = (await store.create_session("u", "")).id
    await log.append(Append(sid, None, None, "tick", "1"))
    await start(log, m, sid, 1)
    assert sid in m
    with m.held(sid):  # as the route deletes
        await store.delete_session(sid, "u")
        with pytest.raises(NotFound):
            await start(log, m, sid, 1)  # not made again from a read in the middle
    with pytest.raises(NotFound):
        await start(log, m, sid, 1)
