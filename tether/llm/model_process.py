"""A model process: runs model calls for the server, off the API's event loop.

`python -m tether.llm.model_process [PROVIDER ...]`, started by the server (`model_processes.py`). Each
call's provider stream is read, parsed and coalesced here (`attempt.stream_reply`, the
same code the server runs when `model_processes = 0`), and only what the log keeps goes back
over the pipe: the reply's events, 20 a second per part at most, then the saved reply or the
error. Measured on 50 turns at 100 one-token deltas a second: the provider SDK, pydantic-ai
and the HTTP stack cost about three times Tether's own work per token, on the loop that
serves every stream.

The wire (frames: a 4-byte length, then a pickle; both ends are the same code):
server -> here  ("warm", 0, configs) first, then ("call", id, config, message_base, Request)
                | ("cancel", id)
here -> server  ("ready", 0) once warm (its SDKs imported, the models built), then ("ev", id, type, data) | ("done", id, saved) |
                ("err", id, exception)
A cancelled call sends nothing more. The process ends when its stdin closes (the server
stopped, or died): it never outlives the server. It imports the SDKs of the providers it is
given first (seconds), so that its first call does not wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import sys
from typing import Any

from tether import heap
from tether.llm.attempt import Request, stream_reply
from tether.llm.config import ModelAgentConfig
from tether.llm.model_processes import frame, read_frame
from tether.llm.providers import build_model, load_sdk
from tether.llm.stream import ReplyStream

log = logging.getLogger("tether.model_process")


def picklable(exc: BaseException) -> BaseException:
    """The exception itself if it crosses the pipe (pydantic-ai's do, with their status,
    headers and body), else one that says the same."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - anything that does not round-trip is described
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class _Out:
    """One call's events, onto the pipe."""

    def __init__(self, writer: asyncio.StreamWriter, call_id: int) -> None:
        self.writer, self.id = writer, call_id

    def emit(self, type: str, data: Any = None) -> None:
        self.writer.write(frame(("ev", self.id, type, data)))


class Server:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.calls: dict[int, asyncio.Task[None]] = {}
        self.models: dict[str, Any] = {}

    def model(self, cfg: ModelAgentConfig) -> Any:
        key = cfg.model_dump_json()
        if key not in self.models:
            self.models[key] = build_model(cfg)
        return self.models[key]

    async def call(self, call_id: int, cfg: ModelAgentConfig, base: str, req: Request) -> None:
        reply = ReplyStream(_Out(self.writer, call_id), base)
        try:
            saved = await stream_reply(self.model(cfg), req, reply)
            out: tuple[Any, ...] = ("done", call_id, saved)
        except asyncio.CancelledError:
            reply.abort()  # the server stopped waiting: nothing more is sent
            raise
        except Exception as exc:  # noqa: BLE001 - the server sorts it (retry or fail)
            reply.close()  # what was shown ends, as in the server's own process
            out = ("err", call_id, picklable(exc))
        finally:
            reply.abort()
            self.calls.pop(call_id, None)
        self.writer.write(frame(out))
        await self.writer.drain()

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = await read_frame(reader)
            except asyncio.IncompleteReadError:
                break  # the server is gone
            if message[0] == "warm":
                for cfg in message[2]:
                    try:
                        self.model(cfg)
                    except Exception:  # its calls will say why (e.g. no key)
                        log.debug("model of agent %s not built", cfg.name, exc_info=True)
                heap.freeze()  # the SDKs and models are loaded: out of the collector's way
                self.writer.write(frame(("ready", 0)))
            elif message[0] == "call":
                _, call_id, cfg, base, req = message
                self.calls[call_id] = asyncio.create_task(self.call(call_id, cfg, base, req))
            elif message[0] == "cancel" and (task := self.calls.get(message[1])) is not None:
                task.cancel()
        for task in list(self.calls.values()):
            task.cancel()


async def main() -> None:
    # The protocol has the process's stdout to itself: whatever prints goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb")
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    await Server(writer).serve(reader)


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the server stops its turns, then closes stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    for provider in sys.argv[1:]:
        load_sdk(provider)
    asyncio.run(main())
