"""The event log in process (no DBOS), on a real SQLite file and on a fresh Postgres
database: seqs, idempotency, batching, retention, failures that cost only their caller."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import sqlalchemy as sa

from tests.conftest import MakeLog
from tests.helpers.server import wait_until
from tether.db.schema import events
from tether.db.store import Store
from tether.events.hub import MemoryHub
from tether.events.log import Append, EventLog, is_storage_failure
from tether.model import TaskStatus, dumps


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
    """Concurrent writers, with appends mixed in that are dropped (a key already there, a
    straggler of an ended task) or fail (text no database can store): the seqs stay gapless
    and in each writer's order, and a reader following the log never sees a gap."""
    store = Store(log.db)
    a = (await store.create_session("u", "a")).id
    b = (await store.create_session("u", "b")).id
    for sid in (a, b):
        row = task_row(sid, f"ended-{sid}")
        await log.append(
            Append(sid, row["id"], None, "task.created", "{}", key=f"{sid}:c", new_task=row),
            Append(sid, row["id"], None, "task.status", "{}", status=TaskStatus.completed),
        )
    setup = 2
    writing = True
    seen: dict[str, list[int]] = {a: [], b: []}

    async def reader(sid: str) -> None:
        after = setup
        while writing or after < setup + 1000:
            got = await log.read_after(sid, after, 10_000)
            # What a follower is shown starts right after its cursor and has no hole.
            assert [e.seq for e in got] == list(range(after + 1, after + 1 + len(got)))
            seen[sid].extend(e.seq for e in got)
            after += len(got)
            await asyncio.sleep(0)

    async def writer(sid: str, w: int) -> None:
        dropped = []
        for i in range(200):
            log.submit(ev(sid, w * 1000 + i, key=f"w{w}.{i}"))
            if i % 10 == 3:  # the same key again: dropped
                dropped.append(log.submit(ev(sid, -1, key=f"w{w}.{i}")))
            if i % 10 == 6:  # for a task that has ended: dropped
                dropped.append(log.submit(ev(sid, -2, task=f"ended-{sid}")))
            if i % 25 == 9:  # a lone surrogate: fails, alone
                dropped.append(log.submit(Append(sid, None, None, "bad", '"\ud800"')))
            if i % 17 == 0:
                await asyncio.sleep(0)
        await log.submit_many([])
        outcomes = await asyncio.gather(*dropped, return_exceptions=True)
        assert all(o is None or isinstance(o, Exception) for o in outcomes)
        assert any(isinstance(o, Exception) for o in outcomes)

    readers = [asyncio.ensure_future(reader(sid)) for sid in (a, b)]
    await asyncio.gather(*(writer(sid, w) for sid in (a, b) for w in range(5)))
    writing = False
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    for sid in (a, b):
        events = await log.read_after(sid, setup, 10_000)
        assert [e.seq for e in events] == list(range(setup + 1, setup + 1001))
        assert seen[sid] == [e.seq for e in events]
        assert (await store.session(sid, "u")).head_seq == setup + 1000
        # Each writer's events keep their submission order; nothing dropped was stored.
        for w in range(5):
            mine = [e.data for e in events if w * 1000 <= int(e.data[5:-1]) < w * 1000 + 1000]
            assert mine == [dumps({"i": w * 1000 + i}) for i in range(200)]
        assert all(int(e.data[5:-1]) >= 0 for e in events)


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
    log.add_listener(hub.publish)
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


async def test_retention_prunes_old_events_and_moves_low_seq(make_log: MakeLog) -> None:
    log = await make_log(retention=100)
    store = Store(log.db)
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


async def test_a_child_refused_creation_leaves_no_events_and_no_steps(log: EventLog) -> None:
    # A parent starts a child without waiting for its creation; the parent was cancelled
    # meanwhile, so the creation is refused: what the child then queues leaves no trace.
    store = Store(log.db)
    sid = (await store.create_session("u", "")).id
    await log.append(
        Append(sid, "p", None, "task.created", "{}", key="p:c", new_task=task_row(sid, "p"))
    )
    cancel = dumps({"status": "cancelled"})
    await log.append(Append(sid, "p", None, "task.status", cancel, status=TaskStatus.cancelled))
    child = task_row(sid, "p.0", parent="p")
    running = dumps({"status": "running"})
    got = await log.append(
        Append(sid, "p.0", "p", "task.created", "{}", key="p.0:c", new_task=child),
        Append(sid, "p.0", "p", "task.status", running, status=TaskStatus.running),
        Append(sid, "p.0", "p", "item.started", "{}", key="p.0:s1.0"),
        Append(sid, "p.0", "p", "task.step", "null", step=(1, "work", "x", False)),
    )
    assert got == [None] * 4
    assert [e.type for e in await log.read_after(sid, 0, 10)] == ["task.created", "task.status"]
    assert await store.steps_of("p.0") == {}


async def test_a_step_record_commits_with_the_events_queued_before_it(log: EventLog) -> None:
    store = Store(log.db)
    sid = (await store.create_session("u", "")).id
    row = task_row(sid, "t") | {"status": "running"}
    await log.append(Append(sid, "t", None, "task.created", "{}", key="t:c", new_task=row))
    step = [Append(sid, "t", None, "tick", dumps(i), key=f"t:s1.{i}") for i in range(3)]
    await log.append(
        *step, Append(sid, "t", None, "task.step", "null", step=(1, "work", "out", False))
    )
    assert await store.steps_of("t") == {1: ("work", "out")}
    # A second record of the same step (a frozen worker's late one) changes nothing, unless
    # it replaces the first (the step's events turned out not to be recorded).
    await log.append(Append(sid, "t", None, "task.step", "null", step=(1, "work", "b", False)))
    assert await store.steps_of("t") == {1: ("work", "out")}
    await log.append(Append(sid, "t", None, "task.step", "null", step=(1, "work", "c", True)))
    assert await store.steps_of("t") == {1: ("work", "c")}


# -- one caller's cancel or bad append costs nobody else anything (issue 8, items 1-3) ------


async def test_a_cancelled_waiter_cancels_only_its_own_wait(log: EventLog) -> None:
    sid = (await Store(log.db).create_session("u", "")).id

    async def writer(i: int) -> list[object]:
        return await log.append(ev(sid, i))

    # Both submit into the same batch before the writer runs; then one is cancelled.
    doomed = asyncio.create_task(writer(1))
    survivor = asyncio.create_task(writer(2))
    await asyncio.sleep(0)
    doomed.cancel()
    got = await survivor
    assert got[0] is not None
    assert [e.data for e in await log.read_after(sid, 0, 10)] == [dumps({"i": 1}), dumps({"i": 2})]
    # And stopping the log afterwards commits and returns (it used to re-raise the cancel).
    log.submit(ev(sid, 3))
    await log.stop()
    assert len(await log.read_after(sid, 0, 10)) == 3
    log.start()


async def test_a_bad_append_fails_alone_and_nothing_else_is_lost(log: EventLog) -> None:
    store = Store(log.db)
    a = (await store.create_session("alice", "")).id
    b = (await store.create_session("bob", "")).id
    await log.append(
        Append(a, "ta", None, "task.created", "{}", key="ta:c", new_task=task_row(a, "ta"))
    )
    futures = []
    for i in range(50):
        futures.append(log.submit(ev(b, i)))
        futures.append(log.submit(ev(a, i)))
        if i == 25:  # a lone surrogate (unstorable) and a number SQLite cannot hold
            bad_text = log.submit(Append(a, None, None, "bad", '"\ud800"'))
            bad_int = log.submit(
                Append(a, "ta", None, "bad", "1", task_values={"progress_n": 10**30})
            )
    results = await asyncio.gather(*futures, bad_text, bad_int, return_exceptions=True)
    assert all(r is None for r in results[:100])
    assert not isinstance(results[100], type(None)) and not isinstance(results[101], type(None))
    for sid in (a, b):
        evs = await log.read_after(sid, 0, 1000)
        assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
        ticks = [e.data for e in evs if e.type == "tick"]
        assert ticks == [dumps({"i": i}) for i in range(50)]
        assert not any(e.type == "bad" for e in evs)


async def test_an_unknown_task_field_is_refused_at_submit(log: EventLog) -> None:
    sid = (await Store(log.db).create_session("u", "")).id
    with pytest.raises(ValueError, match="no_such_column"):
        log.submit(Append(sid, "t", None, "x", "1", task_values={"no_such_column": 1}))


async def test_a_full_disk_fails_each_append_with_a_storage_error(sqlite_log: EventLog) -> None:
    log = sqlite_log
    from sqlalchemy import event as sa_event

    from tether.errors import StorageUnavailable

    sid = (await Store(log.db).create_session("u", "")).id
    await log.append(ev(sid, 0))

    def full(conn: object) -> None:  # a real SQLITE_FULL: the file may not grow
        conn.exec_driver_sql("PRAGMA max_page_count=1")  # type: ignore[attr-defined]

    engine = log.db.writer
    sa_event.listen(engine, "begin", full)
    big = [Append(sid, None, None, "big", dumps("x" * 50_000)) for _ in range(20)]
    retried = Append(sid, None, None, "retried", "2")
    with pytest.raises(StorageUnavailable, match="full"):
        await log.append(*big, retried)
    sa_event.remove(engine, "begin", full)
    # Nothing of the refused batch was kept, and the log goes on once there is room: an
    # append submitted again (a retried outcome) commits, and its caller hears so.
    await log.append(Append(sid, None, None, "after", "1"))
    assert [e is not None for e in await log.append(retried)] == [True]
    assert [(e.seq, e.type) for e in await log.read_after(sid, 0, 100)] == [
        (1, "tick"),
        (2, "after"),
        (3, "retried"),
    ]


async def test_retention_keeps_the_keys_of_tasks_that_may_still_run(make_log: MakeLog) -> None:
    log = await make_log(retention=10)
    db = log.db
    store = Store(db)
    sid = (await store.create_session("u", "")).id
    await log.append(
        Append(sid, "run", None, "task.created", "{}", key="run:c", new_task=task_row(sid, "run"))
    )
    keyed = [Append(sid, "run", None, "tick", dumps(i), key=f"run:s1.{i}") for i in range(300)]
    await log.append(*keyed)
    head = (await store.session(sid, "u")).head_seq
    assert (await store.session(sid, "u")).low_seq > 200  # pruned well past the ticks
    # A replay after a crash re-emits the same keys: all dropped, nothing re-appended.
    again = await log.append(
        *(Append(sid, "run", None, "tick", dumps(i), key=f"run:s1.{i}") for i in range(300))
    )
    assert again == [None] * 300
    assert (await store.session(sid, "u")).head_seq == head
    # Re-creating the task (its `task.created` long pruned) is a no-op, not a constraint error.
    assert await log.append(
        Append(sid, "run", None, "task.created", "{}", key="run:c2", new_task=task_row(sid, "run"))
    ) == [None]
    # Pruned rows are never served, not even to a cursor inside the retained range.
    s = await store.session(sid, "u")
    assert [e.seq for e in await log.read_after(sid, s.low_seq, 1000)] == list(
        range(s.low_seq + 1, head + 1)
    )
    # Once the task has ended, the rows kept for its keys go.
    await log.append(
        Append(
            sid,
            "run",
            None,
            "task.status",
            dumps({"status": "completed"}),
            status=TaskStatus.completed,
        )
    )
    with db.reader.connect() as c:
        left = c.scalar(
            sa.select(sa.func.count()).select_from(events).where(events.c.session_id == sid)
        )
    assert left <= 11


async def test_two_writers_on_one_database_interleave_without_gaps_or_deadlocks(
    make_log: MakeLog,
) -> None:
    # Two logs with their own connections on one database (as two processes would be), each
    # appending batches that touch the same two sessions in opposite orders: every seq of
    # each session is used once, in order, and no batch is lost to a deadlock.
    a = await make_log()
    b = await make_log(same_db_as=a)
    s1 = (await Store(a.db).create_session("u", "")).id
    s2 = (await Store(a.db).create_session("u", "")).id

    async def writer(log: EventLog, first: str, second: str, tag: str) -> None:
        for i in range(40):
            await log.append(
                Append(first, None, None, "tick", dumps({"w": tag, "i": i})),
                Append(second, None, None, "tick", dumps({"w": tag, "i": i})),
            )

    await asyncio.gather(writer(a, s1, s2, "a"), writer(b, s2, s1, "b"))
    for sid in (s1, s2):
        got = await a.read_after(sid, 0, 1000)
        assert [e.seq for e in got] == list(range(1, 81))
        for w in ("a", "b"):  # each writer's events in the order it wrote them
            assert [json.loads(e.data)["i"] for e in got if json.loads(e.data)["w"] == w] == list(
                range(40)
            )


@pytest.mark.parametrize("make_log", ["postgres"], indirect=True)
async def test_a_batch_postgres_aborts_to_break_a_deadlock_is_committed_again(
    make_log: MakeLog,
) -> None:
    # Another transaction (another process's) holds a task row and then asks for its
    # session's row while the log, holding the session, waits for the task: a deadlock.
    # Postgres aborts the log's transaction; the log runs the batch again and nothing of it
    # is lost.
    import psycopg

    log = await make_log()
    sid = (await Store(log.db).create_session("u", "")).id
    row = {
        "id": "t1",
        "session_id": sid,
        "parent_id": None,
        "agent": "a",
        "input": "{}",
        "status": TaskStatus.running.value,
        "app_version": "v",
        "created_at": 0.0,
    }
    await log.append(Append(sid, "t1", None, "task.created", "{}", new_task=row))
    url = log.db.url.replace("postgresql+psycopg", "postgresql")

    held = threading.Event()

    def other_process() -> None:
        with psycopg.connect(url) as c, psycopg.connect(url, autocommit=True) as watch:
            c.execute("SET deadlock_timeout = '20s'")  # the log's side (1 s) detects it
            c.execute("UPDATE tether_tasks SET progress_n = 7 WHERE id = 't1'")
            held.set()
            wait_until(
                lambda: (
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    ).fetchone()
                    == (1,)
                ),
                timeout=10,
                what="the log to wait for the task row",
            )
            c.execute("SELECT 1 FROM tether_sessions WHERE id = %s FOR UPDATE", (sid,))
            c.commit()

    holder = asyncio.create_task(asyncio.to_thread(other_process))
    assert await asyncio.to_thread(held.wait, 10)  # it holds the task row first
    events = await log.append(
        Append(sid, "t1", None, "task.progress", "{}", task_values={"progress_n": 1})
    )
    await holder
    assert events[0] is not None and events[0].seq == 2
    assert log.conflicts >= 1
    task = await Store(log.db).task_row("t1")
    assert task.progress_n == 1  # committed after the other transaction's 7


async def test_postgres_dropping_the_writers_connections_costs_one_commit() -> None:
    # A failover or an admin ends every connection of the writer pool between two commits:
    # the next commit fails as a storage failure (nothing of it recorded), and the one after
    # it lands on a new connection, with the seq the failed one did not take.
    import psycopg

    from tests.helpers.pg import fresh_database
    from tether.db.engine import WRITE_THREADS, Database
    from tether.errors import StorageUnavailable

    with fresh_database() as url:
        db = Database(url)
        db.migrate()
        log = EventLog(db)
        log.start()
        try:
            sid = (await Store(db).create_session("u", "dropped")).id
            await log.append(ev(sid, 1))
            # Every pooled writer connection open (the writer alone would use one).
            await asyncio.gather(
                *(db.write(lambda c: c.exec_driver_sql("SELECT pg_sleep(0.05)")) for _ in range(4))
            )
            with psycopg.connect(url, autocommit=True) as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
            assert ended is not None and ended[0] >= WRITE_THREADS
            with pytest.raises(StorageUnavailable, match="nothing was recorded"):
                await log.append(ev(sid, 2))
            for i in (3, 4):
                await log.append(ev(sid, i))
            got = await log.read_after(sid, 0, 10)
            assert [(e.seq, json.loads(e.data)["i"]) for e in got] == [(1, 1), (2, 3), (3, 4)]
        finally:
            await log.stop()
            await db.close()


async def test_event_data_is_stored_exactly_whatever_it_holds(log: EventLog) -> None:
    # On Postgres a commit's values travel as SQL literals (db/pg_writer.py): quotes,
    # backslashes, marks, SQL of its own and any character must come back as they went.
    sid = (await Store(log.db).create_session("u", "")).id
    hostile = [
        "it's",
        "'; DELETE FROM tether_events; --",
        "\\'; DROP TABLE tether_sessions; --",
        "E'\\x00' \\\\ \\n",
        "? %s %(x)s $1 :name",
        "$$; SELECT pg_sleep(10); $$",
        "Zürich · 東京 · 🧵 · \u200b · \t\r\n",
        "x" * 100_000,
    ]
    key = "'; DELETE FROM tether_events WHERE ''=' {a,\"b\"} \\ NULL"  # an array's syntax too
    await log.append(
        *(Append(sid, None, None, f"t'{i}?", dumps({"v": v})) for i, v in enumerate(hostile)),
        Append(sid, None, None, "keyed", dumps(None), key=key),
    )
    assert (await log.append(Append(sid, None, None, "keyed", dumps(None), key=key)))[0] is None
    got = await log.read_after(sid, 0, 100)
    assert [(e.type, json.loads(e.data)) for e in got] == [
        *((f"t'{i}?", {"v": v}) for i, v in enumerate(hostile)),
        ("keyed", None),
    ]
    head = await Store(log.db).session(sid, "u")
    assert head.head_seq == len(hostile) + 1


async def test_a_fresh_append_whose_key_is_there_anyway_fails_alone(log: EventLog) -> None:
    # A fresh append's key is not looked up (its task never ran before, so it cannot be in
    # the log). Were it there anyway (a frozen worker's copy of a task that moved), the
    # unique index refuses that append alone: nothing is duplicated and the rest commits.
    sid = (await Store(log.db).create_session("u", "")).id
    await log.append(ev(sid, 1, key="t:w0"))
    dup = log.submit(Append(sid, None, None, "tick", dumps({"i": 2}), key="t:w0", fresh=True))
    other = log.submit(ev(sid, 3, key="t2:w0"))
    with pytest.raises(sa.exc.IntegrityError):
        await dup
    await other
    got = await log.read_after(sid, 0, 10)
    assert [(e.seq, json.loads(e.data)["i"]) for e in got] == [(1, 1), (2, 3)]


async def test_a_process_frozen_between_reads_and_writes_holds_no_lock_past_the_timeout() -> None:
    # A Postgres commit is two messages: the reads (locking the session row) and the writes.
    # A process frozen between them (SIGSTOP, a hung VM) sits idle in its transaction, which
    # Postgres ends after idle_in_transaction_session_timeout: another writer gets the row
    # then, not when the frozen one wakes, and nothing of the frozen commit is recorded.
    import psycopg

    from tests.helpers.pg import fresh_database
    from tether.db.engine import Database

    with fresh_database() as url:
        db = Database(url + "?options=-c%20idle_in_transaction_session_timeout%3D300")
        db.migrate()
        try:
            sid = (await Store(db).create_session("u", "frozen")).id
            got_lock = threading.Event()

            def other_writer() -> None:
                with psycopg.connect(url) as c:
                    c.execute("SELECT 1 FROM tether_sessions WHERE id = %s FOR UPDATE", (sid,))
                    got_lock.set()

            def frozen(rows: list[list[tuple[object, ...]]]) -> list[tuple[str, object]]:
                assert rows == [[(0,)]]  # the session's head, locked
                threading.Thread(target=other_writer, daemon=True).start()
                # The whole process stands still (the loop with it) far past the timeout.
                assert got_lock.wait(10), "the frozen transaction kept its lock"
                return [("UPDATE tether_sessions SET title = %s WHERE id = %s", ("late", sid))]

            with pytest.raises(sa.exc.DBAPIError) as failed:
                await db.transact(
                    [("SELECT head_seq FROM tether_sessions WHERE id = %s FOR UPDATE", (sid,))],
                    frozen,
                )
            assert is_storage_failure(failed.value)  # the log answers 503: nothing recorded
            assert (await Store(db).session(sid, "u")).title == "frozen"
            # The next commit goes through on a new connection. (Marks on Postgres: `%s`.)
            await db.transact(
                [],
                lambda rows: [("UPDATE tether_sessions SET title = %s WHERE id = %s", ("ok", sid))],
            )
            assert (await Store(db).session(sid, "u")).title == "ok"
        finally:
            await db.close()


@pytest.mark.parametrize("make_log", ["postgres"], indirect=True)
async def test_a_batch_larger_than_a_message_commits_whole_or_not_at_all(
    make_log: MakeLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Postgres commit's writes go in messages of about MESSAGE_BYTES (here 2 KiB): a batch
    # of many events is written in several, in one transaction. One bad append in the last
    # of them rolls back all of them; it then fails alone and the rest land, in order.
    from tether.db import pg_writer

    monkeypatch.setattr(pg_writer, "MESSAGE_BYTES", 2048)
    sent: list[int] = []
    send = pg_writer.PgWriter._send

    async def counted(conn: object, stmts: list[bytes]) -> object:
        sent.append(sum(map(len, stmts)))
        return await send(conn, stmts)

    monkeypatch.setattr(pg_writer.PgWriter, "_send", staticmethod(counted))
    log = await make_log()
    sid = (await Store(log.db).create_session("u", "")).id
    await log.append(
        Append(sid, "t", None, "task.created", "{}", key="t:c", new_task=task_row(sid, "t"))
    )
    big = [log.submit(ev(sid, i)) for i in range(300)]
    bad = log.submit(Append(sid, "t", None, "bad", "1", task_values={"progress_n": 10**30}))
    assert await asyncio.gather(*big) == [None] * 300
    with pytest.raises(sa.exc.DBAPIError):
        await bad
    got = await log.read_after(sid, 0, 1000)
    assert [e.seq for e in got] == list(range(1, 302))
    assert [json.loads(e.data)["i"] for e in got[1:]] == list(range(300))
    assert log.commits >= 2  # the batch with the bad append was refused, then split
    assert len(sent) > 10 and max(sent) < 2048 + 1024  # many messages, none much over
