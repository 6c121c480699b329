"""The server's model processes: where its model calls run, off the API's event loop.

A model call's per-delta work (the provider's HTTP stream, its SDK, pydantic-ai's parsing,
the coalescing) runs in one of `model_processes` child processes (`model_process.py`),
started as calls need them and replaced after one dies; the server's loop gets the
reply's events already coalesced (20 a second per part at most) and emits them into the
log in the call's own step, as it would have, so keys, order and supersession are
unchanged. A call is given to the ready process with the fewest calls in flight; a process
starts with the first call, another when every running one is busy (a start is seconds of
CPU: its imports, then the agents' models built), up to `model_processes`.

- Cancel (the task is cancelled, or the call runs past its time): the process is told and
  stops the provider call; nothing it sends for that call afterwards is used.
- A process that dies (killed, crashed) fails each of its calls with ModelProcessLost, a
  network error to the caller: the call is tried again as a new attempt, in a new process,
  and supersedes what the lost one had shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tether

if TYPE_CHECKING:  # light to import: it is, on the event loop, by the first turn
    from tether.llm.attempt import Request
    from tether.llm.config import ModelAgentConfig

log = logging.getLogger(__name__)
STOP_S = 5.0
STARTING_CALLS = 8
HEADER = struct.Struct(">I")


def frame(message: tuple[Any, ...]) -> bytes:
    """One message on the pipe (both ways): its length, then its pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; raises IncompleteReadError at the end of the pipe."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return pickle.loads(await reader.readexactly(size))


class ModelProcessLost(ConnectionError):
    """The model process running the call stopped before the call ended."""


class _Proc:
    def __init__(self, proc: asyncio.subprocess.Process, configs: list[ModelAgentConfig]) -> None:
        self.proc = proc
        self.calls: dict[int, asyncio.Queue[Any]] = {}
        self.ready = asyncio.Event()  # it has imported what it needs (or it died)
        self.reader = asyncio.create_task(self._read(), name=f"tether-model-process-{proc.pid}")
        self.send(("warm", 0, configs))  # it builds their models before it says it is ready

    @property
    def alive(self) -> bool:
        return not self.reader.done()

    def send(self, message: tuple[Any, ...]) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.write(frame(message))

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                message = await read_frame(self.proc.stdout)
                if message[0] == "ready":
                    self.ready.set()
                    continue
                queue = self.calls.get(message[1])
                if queue is not None:  # else: a call that stopped waiting
                    queue.put_nowait(message)
        except (asyncio.IncompleteReadError, OSError):
            pass
        except Exception:
            log.exception("model process %s: unreadable message", self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.ready.set()  # no one waits for a dead process
        code = await self.proc.wait()
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        lost = ModelProcessLost(f"the model process (pid {self.proc.pid}) stopped mid-call: {why}")
        for queue in self.calls.values():
            queue.put_nowait(("lost", 0, lost))
        self.calls.clear()


class ModelProcesses:
    """The model processes of this server: at most `size`, started as calls need them
    (a second once the first is busy, ...)."""

    def __init__(self, size: int, configs: list[ModelAgentConfig]) -> None:
        self.size = size
        self.configs = configs  # a new process builds their models before its first call
        self.providers = sorted({c.provider for c in configs})  # and imports their SDKs
        self._procs: list[_Proc] = []
        self._ids = itertools.count(1)
        self._starting = asyncio.Lock()

    async def call(
        self,
        cfg: ModelAgentConfig,
        base: str,
        req: Request,
        emit: Callable[[str, Any], None],
    ) -> Any:
        """Run one attempt in a model process; each event it shows is given to `emit` (in
        the caller's task, in order). Returns the reply as saved (JSON); raises what the
        attempt raised, or ModelProcessLost. Cancelling it stops the provider call."""
        proc = await self._pick()
        call_id = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        proc.calls[call_id] = queue
        finished = False
        try:
            proc.send(("call", call_id, cfg, base, req))
            while True:
                kind, _, *rest = await queue.get()
                if kind == "ev":
                    emit(rest[0], rest[1])
                    continue
                finished = True
                if kind == "done":
                    return rest[0]
                raise rest[0]
        finally:
            proc.calls.pop(call_id, None)
            if not finished and proc.alive:
                proc.send(("cancel", call_id))

    async def start(self) -> None:
        """Start a process if none is running (its imports, seconds of CPU, go on in it
        while the caller's turn reads its history)."""
        async with self._starting:
            self._procs = [p for p in self._procs if p.alive]
            if not self._procs:
                await self._spawn()

    async def ready(self) -> None:
        """Start a process if none is running and wait until one has imported what it
        needs: a model call's time limit starts after that."""
        await self.start()
        waits = [asyncio.ensure_future(p.ready.wait()) for p in self._procs]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _pick(self) -> _Proc:
        """The process with the fewest calls in flight, a starting one counted busy. One
        more starts (up to `size`) when every running one has a call: a start costs seconds
        of CPU, which a server whose calls come one at a time never pays twice."""
        async with self._starting:
            self._procs = [p for p in self._procs if p.alive]
            if not self._procs or (
                len(self._procs) < self.size and all(p.calls for p in self._procs)
            ):
                await self._spawn()
            # A starting process counts as STARTING_CALLS busy: a call waits for its start
            # only when the ready ones have that many each (a call stays where it began).
            return min(
                self._procs,
                key=lambda p: len(p.calls) + (0 if p.ready.is_set() else STARTING_CALLS),
            )

    async def _spawn(self) -> None:
        self._procs.append(_Proc(await _spawn(self.providers), self.configs))

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self._procs if p.alive]

    async def stop(self) -> None:
        """Close each process's stdin (it ends its calls and exits); kill what lingers."""
        procs, self._procs = self._procs, []
        for p in procs:
            assert p.proc.stdin is not None
            p.proc.stdin.close()
        for p in procs:
            try:
                async with asyncio.timeout(STOP_S):
                    await asyncio.shield(p.reader)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.kill()
                await p.reader


async def _spawn(providers: list[str]) -> asyncio.subprocess.Process:
    root = str(Path(tether.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tether.llm.model_process",
        *providers,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
