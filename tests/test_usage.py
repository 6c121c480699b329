"""Usage and cost against the local model server, which reports usage in each provider's wire
format: every call's tokens reach the log and `tether_usage`, add up per turn, session and
user (a retried attempt counted once, as it was paid for), are priced by the agents file,
stay the owner's, and budgets stop a turn before its model call is made."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import KEYS, agents_toml, control, say
from tests.helpers.pg import fresh_database, shared_env
from tests.helpers.server import Api, Server, add_user, user_client
from tether.errors import ModelFailed
from tether.usage import TOKENS, Spent, check

PROBLEM = "application/problem+json"
# Per million tokens: a call of about 20 input and 10 output tokens costs about a cent.
PRICES = {"assistant": (300.0, 600.0), "helper": (100.0, 200.0)}


def priced_server(
    make_server: Any,
    fake: RunningFakeLLM,
    tmp_path: Path,
    prices: tuple[float, float] = PRICES["assistant"],
    **env: str,
) -> Server:
    """`assistant` (Anthropic wire) and `helper` (OpenAI wire), both priced."""
    (a_in, a_out), (h_in, h_out) = prices, PRICES["helper"]
    text = agents_toml(fake, extra=f"price_in = {a_in}\nprice_out = {a_out}")
    text += f"price_in = {h_in}\nprice_out = {h_out}\n"  # the helper's table is the last
    path = tmp_path / f"agents-{len(list(tmp_path.glob('agents-*')))}.toml"
    path.write_text(text)
    return make_server(TETHER_AGENTS_FILE=str(path), **{**KEYS, **env})


def finished(api: Api, task_id: str) -> dict[str, Any]:
    return api.wait_status(task_id, "completed", "failed", "cancelled", "interrupted")


def usage_events(api: Api, sid: str) -> list[dict[str, Any]]:
    return [e for e in api.all_events(sid) if e["type"] == "model.usage"]


def summed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals as the API gives them, from `model.usage` events' data."""
    out: dict[str, Any] = {t: sum(r[t] for r in rows) for t in TOKENS}
    costs = [r["cost"] for r in rows if r["cost"] is not None]
    return {
        "calls": len(rows),
        **out,
        "cost": pytest.approx(sum(costs)) if costs else None,
        "unpriced_calls": len(rows) - len(costs),
    }


def priced(d: dict[str, Any]) -> float:
    p_in, p_out = PRICES[d["agent"]]
    return (d["input_tokens"] * p_in + d["output_tokens"] * p_out) / 1e6


def reported(fake: RunningFakeLLM) -> Counter[tuple[int, int, int]]:
    """(input, output, cache read) of each request the fake reported usage for."""
    return Counter(
        (u["input"], u["output"], u["cache_read"])
        for r in fake.fake.brain.requests
        if (u := r.get("usage"))
    )


@pytest.mark.parametrize("backend,processes", [("sqlite", "2"), ("postgres", "2"), ("sqlite", "0")])
def test_usage_adds_up_per_call_turn_session_and_user_and_stays_the_owners(
    make_server: Any,
    fake_llm: RunningFakeLLM,
    tmp_path: Path,
    backend: str,
    processes: str,
) -> None:
    if backend == "postgres":
        with fresh_database() as url:
            env = shared_env(url, TETHER_MODEL_PROCESSES=processes)
            _adds_up(make_server, fake_llm, tmp_path, env)
    else:
        _adds_up(make_server, fake_llm, tmp_path, {"TETHER_MODEL_PROCESSES": processes})


def _adds_up(make_server: Any, fake: RunningFakeLLM, tmp_path: Path, env: dict[str, str]) -> None:
    server = priced_server(make_server, fake, tmp_path, **env)
    add_user(server, "bob", "bob-password-1", env)
    owner = Api(server.client())
    bob = Api(user_client(server, "bob", "bob-password-1"))

    # The owner: two turns in one session (the second delegates twice: four calls), and a
    # turn in another whose first attempt is cut mid-reply and retried.
    a = owner.session("a")
    t1 = say(owner, a, "words 3")["id"]
    assert finished(owner, t1)["status"] == "completed"
    t2 = say(owner, a, "delegate: one | two")["id"]
    assert finished(owner, t2)["status"] == "completed"
    b = owner.session("b")
    control(fake, faults=[{"cut_after": 2}])
    t3 = say(owner, b, "words 5")["id"]
    assert finished(owner, t3)["status"] == "completed"
    # Bob: one turn.
    c = bob.session("c")
    t4 = say(bob, c, "words 4")["id"]
    assert finished(bob, t4)["status"] == "completed"

    ev = {sid: usage_events(api, sid) for api, sid in ((owner, a), (owner, b), (bob, c))}
    data = {sid: [e["data"] for e in evs] for sid, evs in ev.items()}
    # One event per request the fake reported usage for (the cut one too), with its counts.
    every = [d for rows in data.values() for d in rows]
    assert Counter(
        (d["input_tokens"], d["output_tokens"], d["cache_read_tokens"]) for d in every
    ) == reported(fake)
    assert len(every) == sum(1 for r in fake.fake.brain.requests if r.get("usage")) == 8
    for d in every:
        assert d["cost"] == pytest.approx(priced(d))
    # Per call: which turn, agent and attempt.
    assert Counter(d["turn"] for d in data[a]) == {t1: 1, t2: 4}
    assert Counter(d["agent"] for d in data[a]) == {"assistant": 3, "helper": 2}
    cut, retry = data[b]
    assert (cut["attempt"], retry["attempt"]) == (1, 2) and cut["turn"] == retry["turn"] == t3
    assert cut["output_tokens"] == 1 < retry["output_tokens"]  # what message_start reported

    # Per turn and per session, from tether_usage: the events' sums.
    su = owner.c.get(f"/api/sessions/{a}/usage").json()
    assert su["total"] == summed(data[a])
    assert su["turns"] == {t: summed([d for d in data[a] if d["turn"] == t]) for t in (t1, t2)}
    assert su["through_seq"] == ev[a][-1]["seq"] and su["budget"] is None
    assert owner.c.get(f"/api/sessions/{b}/usage").json()["total"] == summed(data[b])
    # Per user: the owner's two sessions, never bob's; per model.
    mine = owner.c.get("/api/usage").json()
    assert mine["total"] == summed(data[a] + data[b])
    # The month's spend, as the commit hook keeps it for the budget check: the same sum.
    assert mine["budget"] == {"limit": None, "spent": pytest.approx(mine["total"]["cost"])}
    assert {s["session_id"]: s["calls"] for s in mine["sessions"]} == {a: 5, b: 2}
    assert {m["model"]: m["calls"] for m in mine["models"]} == {
        "anthropic:assistant-model": 5,
        "openai:helper-model": 2,
    }
    theirs = bob.c.get("/api/usage").json()
    assert theirs["total"] == summed(data[c])
    assert [s["session_id"] for s in theirs["sessions"]] == [c]
    # Another's session: 404, its usage and its budget alike.
    for path in (f"/api/sessions/{a}/usage",):
        assert bob.c.get(path).status_code == 404
    r = bob.c.put(f"/api/sessions/{a}/budget", json={"budget": 1})
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert owner.c.get(f"/api/sessions/{a}/usage").json()["budget"] is None


def test_usage_windows_and_bad_times(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server = priced_server(make_server, fake_llm, tmp_path)
    api = Api(server.client())
    sid = api.session()
    first = say(api, sid, "words 2")["id"]
    assert finished(api, first)["status"] == "completed"
    between = usage_events(api, sid)[-1]["ts"]
    second = say(api, sid, "words 2")["id"]
    assert finished(api, second)["status"] == "completed"
    rows = [e["data"] for e in usage_events(api, sid)]

    def window(**params: str) -> dict[str, Any]:
        r = api.c.get("/api/usage", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def iso(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()

    assert window()["total"] == summed(rows)  # this month, to now
    assert window(to=iso(between + 1e-3))["total"] == summed(rows[:1])
    assert window(**{"from": iso(between + 1e-3)})["total"] == summed(rows[1:])
    empty = window(**{"from": "2001-01-01", "to": "2001-02-01T00:00:00Z"})
    assert empty["total"]["calls"] == 0 and empty["total"]["cost"] is None
    assert empty["sessions"] == [] and empty["from"] == "2001-01-01T00:00:00Z"
    backwards = window(**{"from": "2026-02-01", "to": "2026-01-01"})
    assert backwards["total"]["calls"] == 0 and backwards["to"] == backwards["from"]
    for params in ({"from": "yesterday"}, {"to": "2026-13-01"}, {"to": "12/01/2026"}):
        r = api.c.get("/api/usage", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert "from" in r.json()["detail"] or "to" in r.json()["detail"]


def _refused(api: Api, sid: str, fake: RunningFakeLLM) -> str:
    """Send a message that a budget must refuse: the turn fails, saying why in the chat, and
    the model is never asked."""
    asked = len(fake.fake.brain.requests)
    turn = finished(api, say(api, sid, "words 2")["id"])
    assert turn["status"] == "failed", turn
    assert len(fake.fake.brain.requests) == asked  # no request reached the model
    shown = [e["data"]["message"] for e in api.all_events(sid) if e["type"] == "RUN_ERROR"]
    assert shown and shown[-1] in str(turn["error"])
    return str(shown[-1])


def _answered(api: Api, sid: str) -> None:
    turn = finished(api, say(api, sid, "words 2")["id"])
    assert turn["status"] == "completed", turn


def test_budgets_stop_a_turn_before_its_model_call(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    # "words 2" is answered in 8 output tokens: at 0.1 each a call costs about $0.80, its
    # input a few thousandths.
    server = priced_server(
        make_server, fake_llm, tmp_path, prices=(100.0, 100_000.0), TETHER_BUDGET_USER="3"
    )
    api = Api(server.client())
    a = api.session("a")
    r = api.c.put(f"/api/sessions/{a}/budget", json={"budget": 1})
    assert r.status_code == 200 and r.json() == {"session_id": a, "budget": 1}
    _answered(api, a)
    _answered(api, a)  # $0.80 spent: the next call's input fits; its output passes $1
    spent = api.c.get(f"/api/sessions/{a}/usage").json()["total"]["cost"]
    assert 1.6 < spent < 1.7
    why = _refused(api, a, fake_llm)
    assert why == (
        f"This session's budget of $1.00 is used up (${spent:.2f} spent); the model was not "
        "called. Raise the budget to go on."
    )
    # Raised, the session goes on.
    api.c.put(f"/api/sessions/{a}/budget", json={"budget": None}).raise_for_status()
    _answered(api, a)

    # The user's monthly budget counts every session of theirs: $2.40 here, then $3.20 in
    # another session, whose next turn is refused.
    b = api.session("b")
    _answered(api, b)
    month = api.c.get("/api/usage").json()
    assert 3.2 < month["budget"]["spent"] < 3.3
    assert month["budget"]["spent"] == pytest.approx(month["total"]["cost"])
    assert month["budget"]["limit"] == 3
    why = _refused(api, b, fake_llm)
    assert why == (
        f"Your monthly budget of $3.00 is used up (${month['budget']['spent']:.2f} spent this "
        "month); the model was not called. Raise the budget to go on."
    )
    # A session's budget does not lift the user's.
    api.c.put(f"/api/sessions/{b}/budget", json={"budget": 100}).raise_for_status()
    assert "Your monthly budget" in _refused(api, b, fake_llm)


def test_a_budget_is_a_positive_amount_or_null(api: Api) -> None:
    sid = api.session()
    for bad in ({"budget": 0}, {"budget": -1}, {"budget": "a lot"}, {}):
        r = api.c.put(f"/api/sessions/{sid}/budget", json=bad)
        assert r.status_code in (400, 422), (bad, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    assert api.c.get(f"/api/sessions/{sid}/usage").json()["budget"] is None
    r = api.c.put("/api/sessions/nope/budget", json={"budget": 1})
    assert r.status_code == 404


def test_a_call_whose_input_would_pass_the_budget_is_refused_though_some_is_left() -> None:
    check(Spent(1.0, 0.5, None, 0.0), 0.4)  # fits
    with pytest.raises(ModelFailed, match=r"does not cover the next model call \(\$0.90 spent"):
        check(Spent(1.0, 0.9, None, 0.0), 0.2)
    with pytest.raises(ModelFailed, match=r"budget of \$1.00 is used up \(\$1.20 spent"):
        check(Spent(None, 0.0, 1.0, 1.2), 0.0)


def test_an_agent_with_one_price_is_refused_at_start(tmp_path: Path) -> None:
    from tether.llm.config import AgentsFileError, load

    path = tmp_path / "agents.toml"
    path.write_text('[agents.a]\nmodel = "openai:x"\nprice_in = 1.0\n')
    with pytest.raises(AgentsFileError, match="both price_in and price_out"):
        load(path)
    path.write_text('[agents.a]\nmodel = "openai:x"\nprice_in = -1.0\nprice_out = 1\n')
    with pytest.raises(AgentsFileError, match="price_in"):
        load(path)
