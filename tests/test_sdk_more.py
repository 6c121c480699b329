"""The SDK's search, export and import, share links and usage against real servers: each
method returns what the server holds, and each refusal is its typed exception."""

from __future__ import annotations

import datetime as dt
import random
import string
from pathlib import Path
from typing import Any

import pytest

import tether.client as sdk
from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_server
from tests.helpers.server import SECRET, Server
from tether.client import AsyncClient, Client


def word() -> str:
    """A word no other test sends (letters only: the index splits on digits)."""
    return "".join(random.choices(string.ascii_lowercase, k=12))


def test_search_finds_what_was_sent_a_page_at_a_time(shared_server: Server) -> None:
    krill, narwhal = word(), word()
    with Client(shared_server.url, secret=SECRET) as c:
        s = c.sessions.create("sdk search")
        turn = s.send(f"where do <b>{krill}</b> live?")
        page = c.search.page(krill)
        assert isinstance(page, sdk.SearchPage) and page.next is None
        [hit] = page.results
        assert isinstance(hit, sdk.SearchResult)
        assert (hit.session_id, hit.kind, hit.task_id) == (s.id, "message", turn.id)
        assert hit.snippet == ["where do <b>", krill, "</b> live?"] and hit.title == "sdk search"
        for i in range(3):
            assert s.start("one_item", {"item": f"{narwhal} {i}"}).wait(60).status == "completed"
        whole = c.search.page(narwhal, limit=50).results
        assert len(whole) >= 3 and {h.kind for h in whole} >= {"task"}
        # Pages of 2 followed to the end: every result of the one big page, in its order.
        first = c.search.page(narwhal, limit=2)
        assert len(first.results) == 2 and first.next is not None
        assert list(c.search.all(narwhal, limit=2)) == whole
        assert list(c.search.all(word())) == []
        # Refusals: results deeper than the server ranks (400), a cursor it does not take.
        with pytest.raises(sdk.BadRequest) as e:
            c.search.page(narwhal, cursor="5000")
        assert e.value.status == 400 and "1000" in e.value.detail
        with pytest.raises(sdk.BadRequest):
            c.search.page(narwhal, cursor="not-a-cursor")
        with pytest.raises(sdk.BadRequest):
            c.search.page("   ")


async def test_the_async_search_pages_the_same(shared_server: Server) -> None:
    w = word()
    async with AsyncClient(shared_server.url, secret=SECRET) as c:
        for i in range(3):
            await c.sessions.create(f"{w} voyage {i}")
        whole = (await c.search.page(w)).results
        assert [h.kind for h in whole] == ["title"] * 3
        assert [h async for h in c.search.all(w, limit=1)] == whole


def _log(c: Client, session_id: str) -> list[tuple[int, str, float, str | None]]:
    """The session's events, each task id written as its top-level task's place in the tree
    (an import gives every task a new id; a sub-task keeps its suffix)."""
    tops = [t.id for t in c.tasks.tree(session_id).tasks]

    def place(tid: str | None) -> str | None:
        for i, top in enumerate(tops):
            if tid is not None and (tid == top or tid.startswith(top + ".")):
                return f"#{i}{tid[len(top) :]}"
        return tid

    events = c.events.page(session_id, limit=1000).events
    return [(e.seq, e.type, e.ts, place(e.task_id)) for e in events]


def test_export_then_import_gives_the_same_log(shared_server: Server) -> None:
    with Client(shared_server.url, secret=SECRET) as c:
        s = c.sessions.create("sdk export: a trip")
        done = s.start("batch", {"items": [1, 2], "delay_s": 0.01}).wait(timeout=60)
        assert done.status == "completed"
        text = c.sessions.export_markdown(s.id)
        assert text.startswith("#") and "sdk export: a trip" in text
        doc = c.sessions.export_json(s.id)
        assert doc["format"] == "tether.session" and doc["session"]["id"] == s.id
        copy = c.sessions.import_json(doc)
        assert isinstance(copy, sdk.Session) and copy.id != s.id
        assert (copy.title, copy.head_seq) == (s.title, c.sessions.get(s.id).head_seq)
        # The same events (seq, type, time), each under its task's new id (sub-tasks keep
        # their place under the new top-level id).
        assert _log(c, copy.id) == _log(c, s.id)
        old, new = c.tasks.tree(s.id).tasks, c.tasks.tree(copy.id).tasks
        assert [(t.agent, t.status, t.result) for t in new] == [
            (t.agent, t.status, t.result) for t in old
        ]
        assert {t.id for t in new}.isdisjoint({t.id for t in old})
        with pytest.raises(sdk.NotFound):
            c.sessions.export_json("s_missing")
        with pytest.raises(sdk.NotFound):
            c.sessions.export_markdown("s_missing")
        with pytest.raises(sdk.InvalidInput) as bad:
            c.sessions.import_json({**doc, "format": "something else"})
        assert bad.value.errors


async def test_the_async_client_exports_and_imports(shared_server: Server) -> None:
    async with AsyncClient(shared_server.url, secret=SECRET) as c:
        s = await c.sessions.create("sdk async export")
        await (await s.start("one_item", {"item": "x"})).wait(timeout=60)
        copy = await c.sessions.import_json(await c.sessions.export_json(s.id))
        assert isinstance(copy, sdk.AsyncSession) and copy.title == s.title
        assert [e.type for e in (await copy.events()).events] == [
            e.type for e in (await s.events()).events
        ]
        assert "sdk async export" in await c.sessions.export_markdown(copy.id)


def test_a_share_token_reads_the_session_until_revoked(shared_server: Server) -> None:
    with Client(shared_server.url, secret=SECRET) as c:
        s = c.sessions.create("sdk shared")
        s.start("one_item", {"item": "seen"}).wait(timeout=60)
        made = c.shares.create(s.id, expires_in_s=3600, label="for Ann")
        assert isinstance(made, sdk.ShareMade) and made.token and made.label == "for Ann"
        assert made.url.endswith(f"#share={made.token}") and not made.expired
        assert made.expires_at == pytest.approx(made.created_at + 3600, abs=5)
        forever = c.shares.create(s.id)
        assert forever.expires_at is None and forever.label == ""
        listed = c.shares.list(s.id)
        assert {x.id for x in listed} == {made.id, forever.id}
        assert all(type(x) is sdk.ShareOut for x in listed)  # the token is shown once
        with Client(shared_server.url, token=made.token) as reader:
            assert reader.sessions.get(s.id).title == "sdk shared"
            assert reader.events.page(s.id).events == c.events.page(s.id).events
            c.shares.revoke(made.id)
            with pytest.raises(sdk.Unauthorized) as e:
                reader.events.page(s.id)
            assert e.value.status == 401
        assert [x.id for x in c.shares.list(s.id)] == [forever.id]
        c.shares.revoke(made.id)  # again: no change
        assert [x.id for x in c.shares.list(s.id)] == [forever.id]
        with pytest.raises(sdk.NotFound):
            c.shares.revoke("sh_missing")
        with pytest.raises(sdk.NotFound):
            c.shares.create("s_missing")
        with pytest.raises(sdk.NotFound):
            c.shares.list("s_missing")
        with pytest.raises(sdk.InvalidInput):
            c.shares.create(s.id, expires_in_s=0)


async def test_the_async_client_shares(shared_server: Server) -> None:
    async with AsyncClient(shared_server.url, secret=SECRET) as c:
        s = await c.sessions.create("sdk async shared")
        made = await c.shares.create(s.id, label="async")
        assert [x.id for x in await c.shares.list(s.id)] == [made.id]
        await c.shares.revoke(made.id)
        assert await c.shares.list(s.id) == []


def test_usage_and_budgets_are_what_the_server_counts(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server = model_server(
        make_server, fake_llm, tmp_path, extra="price_in = 300.0\nprice_out = 600.0"
    )
    with Client(server.url, secret=SECRET) as c:
        s = c.sessions.create("sdk usage")
        turn = s.send("words 3").wait(timeout=60)
        assert turn.status == "completed"
        mine = c.usage.session(s.id)
        assert isinstance(mine, sdk.SessionUsage) and mine.session_id == s.id
        assert mine.budget is None and mine.total.calls >= 1 and mine.total.output_tokens > 0
        assert mine.total.cost and mine.total.cost > 0
        assert set(mine.turns) == {turn.id} and mine.turns[turn.id] == mine.total
        # The window of this month holds the session, with the same totals.
        month = c.usage.get()
        assert isinstance(month, sdk.UsageOut) and month.start.endswith("Z")
        [row] = [x for x in month.sessions if x.session_id == s.id]
        assert row.title == "sdk usage" and row.calls == mine.total.calls
        assert row.cost == pytest.approx(mine.total.cost)
        assert month.budget.spent == pytest.approx(month.total.cost)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert c.usage.get(start=later).total.calls == 0
        assert c.usage.get(start="2000-01-01", end=later).total == month.total
        # A budget set through the SDK is the one usage reads, until it is lifted.
        assert c.usage.set_budget(s.id, 2.5) == sdk.BudgetOut(session_id=s.id, budget=2.5)
        assert c.usage.session(s.id).budget == 2.5
        assert c.usage.set_budget(s.id, None).budget is None
        assert c.usage.session(s.id).budget is None
        with pytest.raises(sdk.InvalidInput):
            c.usage.set_budget(s.id, -1)
        with pytest.raises(sdk.NotFound):
            c.usage.set_budget("s_missing", 1)
        with pytest.raises(sdk.NotFound):
            c.usage.session("s_missing")
        with pytest.raises(sdk.BadRequest):
            c.usage.get(start="last tuesday")


async def test_the_async_client_sets_and_reads_a_budget(shared_server: Server) -> None:
    async with AsyncClient(shared_server.url, secret=SECRET) as c:
        s = await c.sessions.create("sdk async budget")
        assert (await c.usage.set_budget(s.id, 0.75)).budget == 0.75
        got = await c.usage.session(s.id)
        assert got.budget == 0.75 and got.total.calls == 0 and got.turns == {}
        assert (await c.usage.get(end=dt.date(2000, 1, 1))).total.calls == 0


def test_an_answer_that_is_not_tethers_is_not_tether() -> None:
    from tests.test_sdk import _answering

    portal = _answering(200, b"<html>sign in to the wifi</html>")
    with Client(portal, token="x", retry_s=0.5) as c:
        for call in (
            lambda: c.sessions.export_json("s_1"),
            lambda: c.search.page("krill"),
            lambda: c.shares.list("s_1"),
            lambda: c.usage.get(),
        ):
            with pytest.raises(sdk.NotTether):
                call()
