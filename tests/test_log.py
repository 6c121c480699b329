"""The event log on a real SQLite file, in process (no DBOS): seqs, idempotency, batching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether.db.engine import Database
from tether.db.store import Store
from tether.events.hub import MemoryHub
from tether.events.log import Append, EventLog
from tether.model import TaskStatus, dumps


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EventLog]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    db.migrate()
    log = EventLog(db)
    log.start()
    yield log
    await log.stop()
    await db.close()


def task_row(sid: str, task_id: str, parent: str | None = None) -> dict[str, object]:
    return {
        "id": task_id,
        "session_id": sid,
        "parent_id": parent,
        "agent": "a",
        "input": "{}",
        "status": "queued",
        "created_at": 0.0,
    }


def ev(sid: str, i: int, key: str | None = None, task: str | None = None) -> Append:
    return Append(sid, task, None, "tick", dumps({"i": i}), key=key)


async def test_concurrent_appends_get_gapless_ordered_seqs(log: EventLog) -> None:
    store = Store(log.db)
    a = (await store.create_session("u", "a")).id
    b = (await store.create_session("u", "b")).id

    async def writer(sid: str, w: int) -> None:
        for i in range(200):
            log.submit(ev(sid, w * 1000 + i))
            if i % 17 == 0:
                await asyncio.sleep(0)
        await log.submit_many([])

    await asyncio.gather(*(writer(sid, w) for sid in (a, b) for w in range(5)))
    for sid in (a, b):
        events = await log.read_after(sid, 0, 10_000)
        assert [e.seq for e in events] == list(range(1, 1001))
        # Each writer's events keep their submission order.
        for w in range(5):
            mine = [e.data for e in events if w * 1000 <= int(e.data[5:-1]) < w * 1000 + 1000]
            assert mine == [dumps({"i": w * 1000 + i}) for i in range(200)]


async def test_many_small_events_share_transactions(log: EventLog) -> None:
    sid = (await Store(log.db).create_session("u", "")).id
    for i in range(20_000):
        log.submit(ev(sid, i))
    await log.submit_many([])
    assert len(await log.read_after(sid, 19_990, 100)) == 10
    assert log.commits <= 10, log.commits


async def test_a_key_is_appended_once_even_when_resubmitted(log: EventLog) -> None:
    sid = (await Store(log.db).create_session("u", "")).id
    first = await log.append(ev(sid, 1, key="t:s1.0"), ev(sid, 2, key="t:s1.1"))
    assert [e.seq for e in first if e] == [1, 2]
    # A re-run after a crash: same keys (dropped), then one new event (gets seq 3, no gap).
    again = await log.append(
        ev(sid, 1, key="t:s1.0"), ev(sid, 2, key="t:s1.1"), ev(sid, 3, key="t:s1.2")
    )
    assert again[0] is None and again[1] is None and again[2] is not None and again[2].seq == 3
    # Duplicates inside one batch are dropped too.
    twice = await log.append(ev(sid, 4, key="k"), ev(sid, 4, key="k"))
    assert twice[0] is not None and twice[1] is None
    assert [e.seq for e in await log.read_after(sid, 0, 100)] == [1, 2, 3, 4]


async def test_status_changes_stop_at_a_terminal_status(log: EventLog) -> None:
    store = Store(log.db)
    sid = (await store.create_session("u", "")).id
    row = task_row(sid, "t1")
    await log.append(Append(sid, "t1", None, "task.created", "{}", key="t1:c", new_task=row))

    def status(s: TaskStatus) -> Append:
        return Append(sid, "t1", None, "task.status", dumps({"status": s.value}), status=s)

    got = await log.append(
        status(TaskStatus.running), status(TaskStatus.cancelled), status(TaskStatus.completed)
    )
    assert got[0] and got[1] and got[2] is None
    task = await store.task("t1", "u")
    assert task.status is TaskStatus.cancelled and task.last_seq == 3


async def test_hub_gets_committed_events_only_after_commit(log: EventLog) -> None:
    hub = MemoryHub()
    log.listeners.append(hub.publish)
    sid = (await Store(log.db).create_session("u", "")).id
    sub = hub.subscribe(sid)
    fut = log.submit(ev(sid, 1))
    assert sub.pending == []
    await fut
    events, overflow = sub.take()
    assert [e.seq for e in events] == [1] and not overflow
    assert [e.seq for e in await log.read_after(sid, 0, 10)] == [1]
    sub.close()
    assert hub.subscriber_count() == 0


async def test_appends_to_a_missing_session_are_dropped_without_costing_others(
    log: EventLog,
) -> None:
    sid = (await Store(log.db).create_session("u", "")).id
    got = await log.append(ev("s_missing", 1), ev(sid, 2))
    assert got[0] is None and got[1] is not None and got[1].seq == 1
    assert [e.seq for e in await log.read_after(sid, 0, 10)] == [1]
    assert await log.read_after("s_missing", 0, 10) == []


async def test_retention_prunes_old_events_and_moves_low_seq(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    db.migrate()
    log = EventLog(db, retention=100)
    log.start()
    store = Store(db)
    sid = (await store.create_session("u", "")).id
    for i in range(1000):
        log.submit(ev(sid, i))
        if i % 50 == 0:
            await log.submit_many([])
    await log.submit_many([])
    s = await store.session(sid, "u")
    kept = await log.read_after(sid, s.low_seq, 10_000)
    assert s.head_seq == 1000 and 100 <= len(kept) <= 210
    assert [e.seq for e in kept] == list(range(s.low_seq + 1, 1001))
    await log.stop()
    await db.close()


async def test_nothing_is_appended_for_a_task_after_its_terminal_status(log: EventLog) -> None:
    store = Store(log.db)
    sid = (await store.create_session("u", "")).id
    row = task_row(sid, "p")
    await log.append(Append(sid, "p", None, "task.created", "{}", key="p:c", new_task=row))
    await log.append(
        Append(
            sid,
            "p",
            None,
            "task.status",
            dumps({"status": "cancelled"}),
            status=TaskStatus.cancelled,
        )
    )
    child = task_row(sid, "p.0", parent="p")
    got = await log.append(
        Append(sid, "p", None, "task.progress", dumps({"n": 1, "m": 2})),  # a straggler
        Append(sid, "p.0", "p", "task.created", "{}", key="p.0:c", new_task=child),  # a late child
    )
    assert got == [None, None]
    assert [e.type for e in await log.read_after(sid, 0, 10)] == ["task.created", "task.status"]
    assert (await store.task("p", "u")).children == []
