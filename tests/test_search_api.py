"""`GET /api/search` on a real server: what a person finds by the words they sent or a task
worked on, never another user's, a page at a time, and bad queries as 400 problems."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers.server import Api, Server, add_user, user_client


@pytest.fixture
def two_users(make_server: Any) -> tuple[Api, httpx.Client]:
    server: Server = make_server()
    add_user(server, "mallory", "mallory-password")
    return Api(server.client()), user_client(server, "mallory", "mallory-password")


def found(c: httpx.Client, q: str, **params: Any) -> dict[str, Any]:
    r = c.get("/api/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_search_finds_the_owners_work_only_and_pages(two_users: tuple[Api, httpx.Client]) -> None:
    owner, mallory = two_users
    sids = [owner.session(f"voyage {i}") for i in range(3)]
    tasks = [owner.start(sid, "batch", {"items": ["narwhal", f"item{i}"]}) for i, sid in
             enumerate(sids)]  # fmt: skip
    for t in tasks:
        owner.wait_status(t["id"], "completed")
    r = owner.c.post(
        f"/api/sessions/{sids[0]}/messages", json={"text": "where do <b>krill</b> live?"}
    )
    assert r.status_code == 201, r.text
    turn = r.json()["id"]

    hit = found(owner.c, "krill")["results"]
    assert [(h["session_id"], h["kind"], h["task_id"]) for h in hit] == [(sids[0], "message", turn)]
    # Plain text in pieces, the match apart: the page never gets markup to render.
    assert hit[0]["snippet"] == ["where do <b>", "krill", "</b> live?"]
    assert hit[0]["seq"] > 0 and hit[0]["title"] == "voyage 0"

    # Pages of 2 follow one another: together, what one page of 50 holds, each once.
    whole = found(owner.c, "narwhal", limit=50)
    assert whole["next"] is None and len(whole["results"]) > 3
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = found(owner.c, "narwhal", limit=2, **({"cursor": cursor} if cursor else {}))
        pages += page["results"]
        if (cursor := page["next"]) is None:
            break
    assert pages == whole["results"]
    assert {h["session_id"] for h in pages} == set(sids)
    assert {"task", "result"} <= {h["kind"] for h in pages}

    for q in ("narwhal", "krill", "voyage", "item1"):
        assert found(mallory, q) == {"results": [], "next": None}
    msid = mallory.post("/api/sessions", json={"title": "my narwhal"}).json()["id"]
    assert [h["session_id"] for h in found(mallory, "narwhal")["results"]] == [msid]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 5000},
        {"q": "x", "limit": "0"},
        {"q": "x", "limit": "51"},
        {"q": "x", "cursor": "abc"},
        {"q": "x", "cursor": "99999"},
        {"q": "x", "cursor": "5000"},
    ],
)
def test_a_bad_search_is_a_400_problem(api: Api, params: dict[str, str]) -> None:
    r = api.c.get("/api/search", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "q", ['"unbalanced', "NEAR(a b)", "-a", "a*", "*", "(((", "😀", "a:b", "x' OR 1=1 --"]
)
def test_query_syntax_typed_is_text(api: Api, q: str) -> None:
    assert "results" in found(api.c, q)
