"""Search's contract, on a real SQLite file and on a fresh Postgres database: what it finds
(titles, messages, replies, tool results, task inputs and results), that it finds only the
caller's, that its rows commit with the log's commit (and roll back with it), and that no
query a person types is taken as the backend's query syntax."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any

import pytest

from tests.conftest import MakeLog
from tether import search
from tether.db.store import Store
from tether.errors import BadRequest
from tether.events.log import Append, EventLog
from tether.model import dumps


async def indexed(make_log: MakeLog, retention: int = 0) -> tuple[EventLog, Store]:
    """A started log whose commits write search's rows, as the server's does."""
    log = await make_log(retention=retention)
    store = Store(log.db)
    log.add_commit_hook(store.search.on_commit)
    return log, store


async def find(store: Store, owner: str, q: str, limit: int = 50) -> list[search.Hit]:
    terms = search.parse(q)
    return await store.db.read(lambda c: store.search.find(c, owner, terms, limit, 0))


def turn(sid: str, tid: str, text: str) -> Append:
    """A chat message: a turn's task, created with its text (as llm/new_turn.py does)."""
    data = {"agent": "assistant", "input": {"text": text, "parent": None}, "parent_id": None}
    row = {"id": tid, "session_id": sid, "parent_id": None, "agent": "assistant",
           "input": dumps(data["input"]), "status": "queued", "created_at": 0.0}  # fmt: skip
    return Append(sid, tid, None, "task.created", dumps(data), key=f"{tid}:c", new_task=row)


def task(sid: str, tid: str, agent: str, inp: Any, parent: str | None = None) -> Append:
    data = {"agent": agent, "input": inp, "parent_id": parent}
    row = {"id": tid, "session_id": sid, "parent_id": parent, "agent": agent,
           "input": dumps(inp), "status": "queued", "created_at": 0.0}  # fmt: skip
    return Append(sid, tid, parent, "task.created", dumps(data), key=f"{tid}:c", new_task=row)


def done(sid: str, tid: str, result: Any) -> Append:
    from tether.model import TaskStatus

    return Append(
        sid, tid, None, "task.status", dumps({"status": "completed", "result": result}),
        key=f"{tid}:s", status=TaskStatus.completed, task_values={"result": dumps(result)},
    )  # fmt: skip


def tool(sid: str, tid: str, content: str) -> Append:
    data = {"messageId": f"tr-{tid}", "toolCallId": f"c-{tid}", "content": content}
    return Append(sid, tid, None, "TOOL_CALL_RESULT", dumps(data))


def delta(sid: str, tid: str, text: str) -> Append:
    return Append(sid, tid, None, "TEXT_MESSAGE_CONTENT", dumps({"messageId": "m", "delta": text}))


async def test_two_users_500_sessions_each_finds_only_their_own(make_log: MakeLog) -> None:
    log, store = await indexed(make_log)
    owner_of: dict[str, str] = {}
    appends: list[Append] = []
    for i in range(500):
        user = ("ana", "bo")[i % 2]
        sid = (await store.create_session(user, f"plan number{i}")).id
        owner_of[sid] = user
        t, b = f"t{i}", f"b{i}"
        appends += [
            turn(sid, t, f"please compare msgword{i} with the shared harbour"),
            delta(sid, t, f"streamdelta{i} "),  # a delta is not indexed: the reply is
            tool(sid, t, f"fetched page says toolword{i} and harbour"),
            done(sid, t, {"text": f"the reply mentions replyword{i}", "messages": []}),
            task(sid, b, "batch", {"items": [f"itemword{i}", "x"], "delay_s": 0}),
            done(sid, b, [f"resultword{i}"]),
        ]
    await log.append(*appends)
    sids = list(owner_of)
    for i in (0, 1, 251, 498, 499):
        sid, user = sids[i], owner_of[sids[i]]
        other = "bo" if user == "ana" else "ana"
        for word, kind in [
            (f"msgword{i}", "message"),
            (f"replyword{i}", "reply"),
            (f"toolword{i}", "tool"),
            (f"itemword{i}", "task"),
            (f"resultword{i}", "result"),
            (f"number{i}", "title"),
        ]:
            hits = await find(store, user, word)
            assert [(h.session_id, h.kind) for h in hits] == [(sid, kind)], word
            assert await find(store, other, word) == [], f"{other} saw {user}'s {word}"
        assert await find(store, user, f"streamdelta{i}") == []
    # A word in every session: the caller's sessions only, ranked, as many as asked.
    for user in ("ana", "bo"):
        hits = await find(store, user, "harbour", limit=50)
        assert len(hits) == 50
        assert {owner_of[h.session_id] for h in hits} == {user}
        assert {h.kind for h in hits} <= {"message", "tool"}


async def test_a_commits_rows_are_found_as_soon_as_it_returns(make_log: MakeLog) -> None:
    log, store = await indexed(make_log)
    sid = (await store.create_session("ana", "")).id
    for i in range(20):
        await log.append(tool(sid, None, f"fresh{i}"))  # type: ignore[arg-type]
        hits = await find(store, "ana", f"fresh{i}")
        assert [h.seq for h in hits] == [i + 1]


async def test_a_rolled_back_commit_leaves_no_rows(make_log: MakeLog) -> None:
    log, store = await indexed(make_log)
    sid = (await store.create_session("ana", "")).id
    await log.append(turn(sid, "t", "hello"))
    # The task-row change it carries cannot be stored: the append's transaction rolls back.
    bad = tool(sid, "t", "rolledbackword")
    bad.task_values = {"progress_n": 10**30}
    good = tool(sid, "t", "keptword")
    results = await asyncio.gather(log.submit(bad), log.submit(good), return_exceptions=True)
    assert isinstance(results[0], Exception) and results[1] is None
    assert await find(store, "ana", "rolledbackword") == []
    assert [h.kind for h in await find(store, "ana", "keptword")] == ["tool"]


async def test_a_message_is_found_by_the_names_of_its_files(make_log: MakeLog) -> None:
    """Also a message of files alone, which has no other words (and no empty row)."""
    log, store = await indexed(make_log)
    sid = (await store.create_session("ana", "")).id

    def sent(tid: str, text: str, *names: str) -> Append:
        files = [{"name": n, "path": f"attachments/x/{n}", "size": 1, "media_type": "text/plain"}
                 for n in names]  # fmt: skip
        return task(sid, tid, "assistant", {"text": text, "parent": None, "attachments": files})

    await log.append(sent("t1", "", "quarterly-figures.csv"))
    await log.append(sent("t2", "compare these", "budget.txt", "quarterly-figures.csv"))
    hits = await find(store, "ana", "quarterly")
    assert sorted((h.task_id, h.kind) for h in hits) == [("t1", "message"), ("t2", "message")]
    assert [h.task_id for h in await find(store, "ana", "compare budget")] == ["t2"]
    assert [h.body for h in hits if h.task_id == "t1"] == ["quarterly-figures.csv"]


async def test_rename_delete_and_retention_leave_no_result_pointing_to_nothing(
    make_log: MakeLog,
) -> None:
    log, store = await indexed(make_log, retention=5)
    sid = (await store.create_session("ana", "Lisbon notes")).id
    await store.rename_session(sid, "ana", "Porto notes")
    assert await find(store, "ana", "lisbon") == []
    assert [(h.kind, h.title) for h in await find(store, "ana", "porto")] == [
        ("title", "Porto notes")
    ]
    for i in range(120):
        await log.append(tool(sid, None, f"pruneword{i} common"))  # type: ignore[arg-type]
    low = (await store.session(sid, "ana")).low_seq
    assert low > 0
    seqs = {h.seq for h in await find(store, "ana", "common", limit=50)}
    assert seqs and min(seqs) > low  # every pruned event's row went with it
    assert await find(store, "ana", "pruneword0") == []
    assert len(await find(store, "ana", "pruneword119")) == 1
    other = (await store.create_session("ana", "Porto again")).id
    await store.delete_session(sid, "ana")
    assert {h.session_id for h in await find(store, "ana", "porto")} == {other}
    assert await find(store, "ana", "common") == []


NASTY = [
    '"unbalanced',
    'a "phrase" here',
    "harbour*",
    "*",
    "NEAR(harbour compare)",
    "harbour NOT compare",
    "-harbour",
    "harbour OR x",
    "(((harbour",
    "harbour)",
    "col:harbour",
    "^harbour",
    "'; DROP TABLE tether_events; --",
    "\\",
    "%_%",
    "😀 harbour 🚢",
    "😀",
    "ｈａｒｂｏｕｒ",
    "harbour\x00",
    "a" * 5000,
    "harbour " * 100,
    "   ",
    "",
]


@pytest.mark.parametrize("q", NASTY, ids=range(len(NASTY)))
async def test_no_typed_query_is_taken_as_query_syntax(make_log: MakeLog, q: str) -> None:
    """Each either finds (possibly nothing) or is a BadRequest saying why: never an error
    of the database's query parser."""
    log, store = await indexed(make_log)
    sid = (await store.create_session("ana", "")).id
    await log.append(tool(sid, None, "compare the harbour (near the col) with x"))  # type: ignore[arg-type]
    try:
        terms = search.parse(q)
    except BadRequest as exc:
        assert exc.detail
        return
    if not terms:  # no word in it: nothing to find, and nothing is asked of the database
        return
    hits = await store.db.read(lambda c: store.search.find(c, "ana", terms, 20, 0))
    assert all(h.session_id == sid for h in hits)


def test_a_snippet_is_plain_text_pieces_with_the_matches_apart() -> None:
    body = "x " * 200 + "<img src=x onerror=alert(1)> the Harbour is near " + "y " * 200
    pieces = search.snippet(body, search.parse("harbour"))
    assert pieces[1] == "Harbour" and len(pieces) == 3
    assert "<img src=x onerror=alert(1)>" in pieces[0]  # text, for the page to show as text
    assert pieces[0].startswith("…") and pieces[2].endswith("…")
    assert search.snippet("no match here", search.parse("zzz")) == ["no match here"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_what_was_there_before_search_is_indexed_by_its_migration(
    backend: str, tmp_path: Any
) -> None:
    """A database written before migration 0012 (titles, messages, replies, tool results)
    is searchable after the upgrade, by the rules the writer follows from then on."""
    from pathlib import Path

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from tests.helpers.pg import fresh_database
    from tether.db.engine import Database, sync_url

    def upgrade(url: str, to: str) -> None:
        engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
        cfg = Config(str(Path(search.__file__).parents[1] / "db" / "alembic.ini"))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, to)
        engine.dispose()

    with (
        fresh_database()
        if backend == "postgres"
        else nullcontext(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}") as url
    ):
        upgrade(url, "0011")
        db = Database(url)
        engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
        with engine.begin() as c:  # as the writer before search wrote them
            c.exec_driver_sql(
                "INSERT INTO tether_sessions (id, owner, title, created_at) VALUES"
                " ('s1', 'ana', 'Old voyage', 0)"
            )
            for seq, a in enumerate(
                [turn("s1", "t", "an old krill question"), tool("s1", "t", "old tool plankton"),
                 done("s1", "t", {"text": "an old reply about whales", "messages": []})],
                start=1,
            ):  # fmt: skip
                c.execute(
                    sa.text(
                        "INSERT INTO tether_events (session_id, seq, task_id, type, data, ts)"
                        " VALUES (:s, :q, :t, :y, :d, 0)"
                    ),
                    {"s": "s1", "q": seq, "t": a.task_id, "y": a.type, "d": a.data},
                )
        engine.dispose()
        upgrade(url, "head")
        store = Store(db)
        try:
            for q, kind in [("voyage", "title"), ("krill", "message"), ("plankton", "tool"),
                            ("whales", "reply")]:  # fmt: skip
                assert [h.kind for h in await find(store, "ana", q)] == [kind], q
            assert await find(store, "bo", "krill") == []
        finally:
            await db.close()
