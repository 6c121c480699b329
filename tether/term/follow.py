"""Following a session: `tether attach` and `tether run` (a live view, or `--json` lines) and
`tether tail` (every event, for pipes).

The stream is the SDK's: every event once, in seq order, through drops, restarts and token
expiry. While it is down the view asks the server for each task's status every few
seconds, so what it shows is true even then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.live import Live

from tether.client import AsyncClient, ConnectionState, EventOut, Reset, Snapshot
from tether.term.common import BY_STATUS, Exit, emit, err, out
from tether.term.state import SessionState
from tether.term.view import Fit, connection, describe, render, short
from tether.web.schemas import TaskNode

POLL_S = 3.0  # while the stream is down, the view asks for the status this often
DRAW_S = 0.2


@dataclass(slots=True)
class Target:
    """What is followed: a session's root tasks, or one task (and what it delegates)."""

    session_id: str
    roots: list[str] = field(default_factory=list)
    whole_session: bool = False
    footer: str = ""


async def resolve(client: AsyncClient, target: str) -> Target:
    """A task id (`t_…`) or a session id (`s_…`)."""
    if target.startswith("t_"):
        task = await client.tasks.get(target)
        return Target(task.session_id, [task.id])
    session = await client.sessions.get(target)
    roots = [t.id for t in session.tasks or [] if t.status in ("queued", "running")]
    return Target(session.id, roots, whole_session=True)


def outcome(state: SessionState, roots: list[str]) -> int:
    codes = {BY_STATUS.get(state.tasks[r].status, Exit.OK) for r in roots if r in state.tasks}
    for worst in (Exit.FAILED, Exit.CANCELLED):
        if worst in codes:
            return worst
    return Exit.OK


async def follow(client: AsyncClient, target: Target, *, after: int | None, as_json: bool) -> int:
    """Until every root task has ended: a live view from now on, or (`as_json`) one JSON
    line per event of the roots' subtrees after `after`; the exit code says how the roots
    ended."""
    state = SessionState(target.session_id)
    tree = await client.tasks.tree(target.session_id, brief=True)
    client.tokens.on_retry = None  # (reached: from now on the view says how the link is)
    mine: set[str] = set(target.roots)  # the roots' subtrees: their events are printed
    for node in _walk(tree.tasks):
        state.adopt(node)
        if node.parent_id in mine:
            mine.add(node.id)
    # What the tree says is true at its head: the view reads on from there; the JSON lines
    # from `after`, and at least up to that head (a root that ended has its end printed).
    head = tree.head_seq
    stream = client.sessions.stream(
        target.session_id, after=head if after is None else after, control=True
    )
    polled: str | None = None
    dropped = False

    def finished() -> bool:
        ends = [state.tasks.get(r) for r in target.roots]
        return all(t is not None and t.done for t in ends) and stream.cursor >= head

    # Transient: the live frame is cut to the screen; the last one is printed whole after.
    live = None if as_json else Live(console=out, auto_refresh=False, transient=True)

    def draw() -> None:
        if live is not None:
            fit = Fit(out.size.width, out.size.height)
            view = render(state, target.roots, stream.state, target.footer, polled=polled, fit=fit)
            live.update(view)
            live.refresh()

    async def ticker() -> None:
        nonlocal polled
        down = 0.0
        while True:
            draw()
            await asyncio.sleep(DRAW_S)
            down = 0.0 if stream.state.kind == "live" else down + DRAW_S
            if stream.state.kind == "live":
                polled = None
            elif down >= POLL_S:
                down = 0.0
                polled = await _poll(client, state, target.roots)

    try:
        with live or contextlib.nullcontext():
            tick = asyncio.create_task(ticker()) if live is not None else None
            try:
                async with stream:
                    if not finished():
                        async for item in stream:
                            if isinstance(item, Reset):
                                state.reset(item.snapshot)
                                err.print("tether: the log before this point was pruned; rebuilt")
                            elif isinstance(item, EventOut):
                                if item.type == "task.created" and item.parent_task_id in mine:
                                    mine.add(str(item.task_id))
                                state.apply(item)
                                if as_json and (target.whole_session or item.task_id in mine):
                                    emit(item.model_dump(mode="json"))
                            elif isinstance(item, ConnectionState) and as_json:
                                dropped = say(item, dropped)
                            if finished():
                                break
            finally:
                if tick is not None:
                    tick.cancel()
    finally:
        if live is not None:  # the last frame, whole: how it ended, or where it was left
            end = "finished" if finished() else "detached"
            whole = Fit(out.size.width, 10_000)
            out.print(render(state, target.roots, stream.state, "", end=end, fit=whole))
    return outcome(state, target.roots)


def say(state: ConnectionState, dropped: bool) -> bool:
    """On stderr, for scripts' logs: a drop, each try, and the end of the drop (not the
    first connect). Returns whether the stream is down now."""
    if state.kind in ("reconnecting", "offline"):
        err.print(f"tether: {connection(state).plain}", markup=False, soft_wrap=True)
        return True
    if state.kind == "live" and dropped:
        err.print("tether: ● Live again", markup=False)
    return False


def _walk(nodes: list[TaskNode]) -> Iterator[TaskNode]:
    for n in nodes:
        yield n
        yield from _walk(n.children)


async def _poll(client: AsyncClient, state: SessionState, roots: list[str]) -> str | None:
    """The stream is down: ask for the roots' status (a failure here is met by the
    stream's own reconnects, so it only says so)."""
    try:
        for r in roots:
            state.adopt(await asyncio.wait_for(client.tasks.get(r), POLL_S))
    except Exception as exc:  # noqa: BLE001 (any failure: the view says the status is old)
        return f"status check failed: {type(exc).__name__}"
    return "status checked " + time.strftime("%H:%M:%S")


async def tail(
    client: AsyncClient, session_id: str, *, after: int, follow: bool, as_json: bool
) -> int:
    """Every event of the session after `after`, in seq order, once each; forever, or
    (`follow=False`) up to the head the server had when it answered."""
    state = SessionState(session_id)
    with _pipe_closed_ends(asyncio.current_task()) as closed:
        try:
            await _tail(client, session_id, state, after, follow, as_json)
        except asyncio.CancelledError:
            if closed():
                raise BrokenPipeError from None
            raise
    return Exit.OK


@contextlib.contextmanager
def _pipe_closed_ends(task: asyncio.Task[Any] | None) -> Iterator[Callable[[], bool]]:
    """While it runs, stdout being a pipe whose reader went away (`| head -1`) cancels
    `task` at once, not at its next write: a quiet session may not write for hours."""
    fd = sys.stdout.fileno()
    seen = [False]

    def gone() -> bool:
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        seen[0] = seen[0] or any(ev & select.POLLERR for _, ev in poll.poll(0))
        return seen[0]

    if task is None or not stat.S_ISFIFO(os.fstat(fd).st_mode):
        yield gone
        return
    loop = asyncio.get_running_loop()
    # The write end of a pipe is "readable" only when its reader has closed (an error).
    loop.add_reader(fd, lambda: gone() and task.cancel())
    try:
        yield gone
    finally:
        loop.remove_reader(fd)


async def _tail(
    client: AsyncClient,
    session_id: str,
    state: SessionState,
    after: int,
    follow: bool,
    as_json: bool,
) -> None:
    head = None
    dropped = False
    async with client.sessions.stream(session_id, after=after, control=True) as stream:
        async for item in stream:
            if isinstance(item, Snapshot) and head is None:
                head = item.head_seq
            elif isinstance(item, EventOut):
                state.apply(item)
                if as_json:
                    emit(item.model_dump(mode="json"))
                else:
                    who = state.tasks.get(item.task_id or "")
                    out.print(
                        f"#{item.seq} {time.strftime('%H:%M:%S', time.localtime(item.ts))} "
                        f"{short(who.agent, 30) if who else 'session'}: {describe(item)}",
                        markup=False,
                    )
            elif isinstance(item, ConnectionState):
                dropped = say(item, dropped)
            if not follow and head is not None and stream.cursor >= head:
                break
