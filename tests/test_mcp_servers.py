"""MCP servers that misbehave (tests/helpers/mcp_calc.py, over stdio): a stalled tool call or
listing ends within the agent's `mcp_timeout_s` with a clear failure and the server is
restarted for the next call; and one session's broken server never fails another user's
turn (each chat session has its own connection)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.models import model_session, say
from tests.helpers.server import ROOT, Api, Server, add_user, counter_lines, user_client, wait_until

SCRIPT = ROOT / "tests" / "helpers" / "mcp_calc.py"


def _done(api: Api, task_id: str, timeout: float = 90) -> dict[str, Any]:
    return api.wait_status(
        task_id, "completed", "failed", "cancelled", "interrupted", timeout=timeout
    )


def _mcp_extra(timeout: float | None = None) -> str:
    """The agent's MCP server: the test calculator over stdio, its env from the server's.
    (A fresh server's first request can take seconds on a loaded 2-core machine: with 3 s
    the test failed now and then.)"""
    env = (
        '{ TETHER_TEST_COUNTER = "${TETHER_TEST_COUNTER}", '
        'TETHER_TEST_MCP_STALL_LIST = "${TETHER_TEST_MCP_STALL_LIST}" }'
    )
    entry = f'{{ command = "{sys.executable}", args = ["{SCRIPT}"], env = {env} }}'
    return f"mcp = [{entry}]" + (f"\nmcp_timeout_s = {timeout}" if timeout else "")


def _starts(server: Server) -> list[str]:
    return [line for line in counter_lines(server) if line.startswith("mcp start")]


def test_a_stalled_tool_call_fails_within_the_timeout_and_the_next_call_works(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        approval=[],
        extra=_mcp_extra(timeout=5),
        TETHER_TEST_MCP_STALL_LIST=str(tmp_path / "no-stall"),
    )
    warm = _done(api, say(api, sid, "mcp add a=2 b=3")["id"])
    assert warm["status"] == "completed" and warm["result"]["text"] == "Done: 5", warm.get("error")
    assert len(_starts(server)) == 1

    began = time.monotonic()
    stalled = _done(api, say(api, sid, "mcp stall")["id"])
    took = time.monotonic() - began
    # The turn goes on: the model reads the failure, which says what happened.
    assert stalled["status"] == "completed", stalled
    assert "did not answer within 5 s (mcp_timeout_s)" in stalled["result"]["text"]
    assert "restarted" in stalled["result"]["text"]
    assert took < 30, took
    assert any(line.startswith("mcp stall") for line in counter_lines(server))

    after = _done(api, say(api, sid, "mcp add a=1 b=1")["id"])
    assert after["status"] == "completed" and after["result"]["text"] == "Done: 2", after.get(
        "error"
    )
    assert len(_starts(server)) == 2  # the stalled server was replaced by a new one


def test_a_stalled_listing_fails_the_turn_clearly_and_the_next_turn_works(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    flag = tmp_path / "stall-list"
    flag.write_text("")
    server, api, sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        approval=[],
        extra=_mcp_extra(timeout=5),
        TETHER_TEST_MCP_STALL_LIST=str(flag),
    )
    began = time.monotonic()
    failed = _done(api, say(api, sid, "mcp add a=2 b=3")["id"])
    took = time.monotonic() - began
    assert failed["status"] == "failed", failed
    message = failed["error"]["message"]
    assert "could not be listed" in message and "did not answer within 5 s" in message
    assert took < 40, took  # the start has its own bound; the listing 5 s
    shown = [e["data"]["message"] for e in api.all_events(sid) if e["type"] == "RUN_ERROR"]
    assert shown == [message]

    flag.unlink()
    after = _done(api, say(api, sid, "mcp add a=2 b=3")["id"])
    assert after["status"] == "completed" and after["result"]["text"] == "Done: 5", after


def test_one_users_broken_mcp_server_does_not_fail_another_users_turn(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, alice, alice_sid = model_session(
        make_server,
        fake_llm,
        tmp_path,
        approval=[],
        extra=_mcp_extra(),
        TETHER_TEST_MCP_STALL_LIST=str(tmp_path / "no-stall"),
    )
    add_user(server, "bob", "correct horse battery")
    bob = Api(user_client(server, "bob", "correct horse battery", timeout=30))
    try:
        bob_sid = bob.session("bob's")
        # Alice's call is in flight when Bob's server dies mid-call.
        slow = say(alice, alice_sid, "mcp slow a=2 b=3 seconds=4")
        wait_until(
            lambda: any(line.startswith("mcp slow started") for line in counter_lines(server)),
            timeout=60,
            what="alice's slow call in flight",
        )
        die = say(bob, bob_sid, "mcp die")
        wait_until(
            lambda: any(line.startswith("mcp die") for line in counter_lines(server)),
            timeout=60,
            what="bob's server dying",
        )
        answered = _done(alice, slow["id"])
        assert answered["status"] == "completed", answered
        assert answered["result"]["text"] == "Done: 5"  # not "Connection closed"
        # Bob's turn goes on too: the model reads what happened to the call.
        died = _done(bob, die["id"])
        assert died["status"] == "completed", died
        assert "connection to the MCP server" in died["result"]["text"]
        assert "restarted" in died["result"]["text"]

        # Both go on: Bob's server was restarted, Alice's was never touched.
        for api, sid, text in ((bob, bob_sid, "Done: 3"), (alice, alice_sid, "Done: 3")):
            again = _done(api, say(api, sid, "mcp add a=1 b=2")["id"])
            assert again["status"] == "completed" and again["result"]["text"] == text, again
    finally:
        bob.c.close()


def test_open_connections_are_capped_least_recently_used_first(tmp_path: Path) -> None:
    """A heavy user's many sessions do not each keep an MCP server process alive: past
    max_open, the least recently used idle connection is closed (its process stops)."""
    import asyncio

    from tether.llm.config import McpCommand
    from tether.llm.mcp_servers import McpConnections

    counter = tmp_path / "counter.txt"
    ref = McpCommand(
        command=sys.executable,
        args=[str(ROOT / "tests" / "helpers" / "mcp_calc.py")],
        env={"TETHER_TEST_COUNTER": str(counter)},
    )

    async def go() -> None:
        conns = McpConnections(max_open=2)
        try:
            for sid in ("s1", "s2", "s3"):
                out = await conns.call_tool(sid, ref, "add", {"a": 1, "b": 2}, timeout=30)
                assert "3" in str(out)
            assert {k[0] for k in conns._conns} == {"s2", "s3"}  # s1, the oldest, closed
            if conns._closing:
                await asyncio.wait(set(conns._closing), timeout=15)
            pids = [
                int(line.split()[-1])
                for line in counter.read_text().splitlines()
                if line.startswith("mcp start")
            ]
            assert len(pids) == 3
            alive = [p for p in pids if Path(f"/proc/{p}").exists()]
            assert pids[0] not in alive and len(alive) == 2
        finally:
            await conns.close()

    asyncio.run(go())
