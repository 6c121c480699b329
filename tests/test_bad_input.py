"""Every bad request gets its status and a problem+json body, and writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers.server import Api, Server


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    body = dict(r.json())
    assert body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.fixture
def populated(api: Api) -> tuple[Api, str, str]:
    sid = api.session()
    root = api.start(sid, "one_item", {"item": "x"})["id"]
    api.wait_status(root, "completed")
    return api, sid, root


def state(api: Api) -> Any:
    sessions = api.c.get("/api/sessions").json()["sessions"]
    return [(s["id"], s["head_seq"]) for s in sessions], [
        len(api.c.get(f"/api/sessions/{s['id']}/tasks").json()["tasks"]) for s in sessions
    ]


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "", "3x", "1e3", "99999999999999999999999"])
def test_malformed_cursor_is_400(populated: tuple[Api, str, str], cursor: str) -> None:
    api, sid, _ = populated
    problem(api.c.get(f"/api/sessions/{sid}/events", params={"after": cursor}), 400)
    problem(api.c.get(f"/api/sessions/{sid}/stream", params={"after": cursor}), 400)
    problem(api.c.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": cursor}), 400)


@pytest.mark.parametrize("limit", ["0", "abc", "100000"])
def test_bad_limit_is_400(populated: tuple[Api, str, str], limit: str) -> None:
    api, sid, _ = populated
    problem(api.c.get(f"/api/sessions/{sid}/events", params={"limit": limit}), 400)


def test_unknown_ids_are_404(populated: tuple[Api, str, str]) -> None:
    api, _, _ = populated
    before = state(api)
    for method, path in [
        ("GET", "/api/sessions/s_nope"),
        ("GET", "/api/sessions/s_nope/tasks"),
        ("GET", "/api/sessions/s_nope/events"),
        ("GET", "/api/sessions/s_nope/stream"),
        ("GET", "/api/tasks/t_nope"),
        ("POST", "/api/tasks/t_nope/cancel"),
        ("GET", "/api/no-such-route"),
    ]:
        problem(api.c.request(method, path), 404)
    problem(api.c.post("/api/sessions/s_nope/tasks", json={"agent": "one_item", "input": {}}), 404)
    assert state(api) == before


@pytest.mark.parametrize(
    "body",
    [
        {"agent": "no_such_agent", "input": {}},
        {"agent": "batch", "input": {"items": []}},
        {"agent": "batch", "input": {"items": "abc"}},
        {"agent": "batch", "input": {"items": [1], "delay_s": -1}},
        {"agent": "batch", "input": {"items": [1], "parallel": 0}},
        {"agent": "batch"},
        {"input": {}},
        {"agent": "", "input": {}},
        [1, 2],
    ],
)
def test_unknown_agent_or_invalid_input_is_422(populated: tuple[Api, str, str], body: Any) -> None:
    api, sid, _ = populated
    before = state(api)
    out = problem(api.c.post(f"/api/sessions/{sid}/tasks", json=body), 422)
    assert out["detail"]
    assert state(api) == before


def test_invalid_input_names_the_field(populated: tuple[Api, str, str]) -> None:
    api, sid, _ = populated
    out = problem(
        api.c.post(
            f"/api/sessions/{sid}/tasks",
            json={"agent": "batch", "input": {"items": [1], "delay_s": -1}},
        ),
        422,
    )
    assert [e["loc"] for e in out["errors"]] == [["delay_s"]]
    out = problem(api.c.post(f"/api/sessions/{sid}/tasks", json={"agent": "nope"}), 422)
    assert "batch" in out["detail"]  # says which agents exist


def test_malformed_json_is_400(populated: tuple[Api, str, str]) -> None:
    api, sid, _ = populated
    before = state(api)
    r = api.c.post(
        f"/api/sessions/{sid}/tasks",
        content=b'{"agent": "batch",',
        headers={"content-type": "application/json"},
    )
    problem(r, 400)
    assert state(api) == before


def test_cursor_beyond_head_is_410_with_a_snapshot(populated: tuple[Api, str, str]) -> None:
    api, sid, root = populated
    head = api.c.get(f"/api/sessions/{sid}").json()["head_seq"]
    for r in (
        api.c.get(f"/api/sessions/{sid}/events", params={"after": head + 1}),
        api.c.get(f"/api/sessions/{sid}/stream", params={"after": head + 1}),
        api.c.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(head + 5)}),
    ):
        body = problem(r, 410)
        assert body["snapshot"]["head_seq"] == head
        assert [t["id"] for t in body["snapshot"]["tasks"]] == [root]
        assert body["snapshot"]["tasks"][0]["status"] == "completed"
    # The head itself is a fine cursor: nothing new yet.
    assert api.c.get(f"/api/sessions/{sid}/events", params={"after": head}).json()["events"] == []


def test_oversized_body_is_413(populated: tuple[Api, str, str]) -> None:
    api, sid, _ = populated
    before = state(api)
    big = {"agent": "batch", "input": {"items": ["x" * 1000] * 2000}}
    problem(api.c.post(f"/api/sessions/{sid}/tasks", json=big), 413)

    def chunks() -> Any:
        yield b'{"agent": "batch", "input": {"items": ['
        for _ in range(3000):
            yield b'"' + b"y" * 1000 + b'",'
        yield b'"z"]}}'

    r = api.c.post(
        f"/api/sessions/{sid}/tasks", content=chunks(), headers={"content-type": "application/json"}
    )
    problem(r, 413)
    assert state(api) == before


def test_cursor_older_than_retention_is_410(make_server: Any) -> None:
    server: Server = make_server(TETHER_RETENTION_EVENTS="50")
    api = Api(server.client())
    sid = api.session()
    root = api.start(sid, "blast", {"count": 400, "steps": 4})["id"]
    api.wait_status(root, "completed")
    s = api.c.get(f"/api/sessions/{sid}").json()
    assert s["first_seq"] > 300
    body = problem(api.c.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": "10"}), 410)
    assert body["snapshot"]["first_seq"] == s["first_seq"]
    assert body["snapshot"]["head_seq"] == s["head_seq"]
    problem(api.c.get(f"/api/sessions/{sid}/events", params={"after": 0}), 410)
    # A cursor inside what is kept still works, and the kept events are gapless.
    page = api.c.get(f"/api/sessions/{sid}/events", params={"after": s["first_seq"] - 1}).json()
    assert [e["seq"] for e in page["events"]] == list(range(s["first_seq"], s["head_seq"] + 1))
