"""The limit: the same delivery path (uvicorn, Starlette streaming, the same frames) with the
log and the task machinery taken out. Frames are pre-built and written as fast as the socket
takes them.  python -m benchmarks.limit --port N"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


def frame(seq: int) -> str:
    data = json.dumps({"k": seq // 1000, "i": seq % 1000}, separators=(",", ":"))
    env = (
        f'{{"seq":{seq},"session_id":"s_0123456789abcdef","task_id":"t_0123456789abcdef",'
        f'"parent_task_id":null,"type":"tick","data":{data},"ts":{time.time()!r}}}'
    )
    return f"id: {seq}\ndata: {env}\n\n"


_built: dict[tuple[int, int], list[bytes]] = {}


def built(n: int, batch: int) -> list[bytes]:
    """Chunks of pre-encoded frames, built once (warm the cache before measuring)."""
    if (n, batch) not in _built:
        _built[(n, batch)] = [
            "".join(frame(i) for i in range(start, min(n, start + batch - 1) + 1)).encode()
            for start in range(1, n + 1, batch)
        ]
    return _built[(n, batch)]


async def frames(request: Request) -> StreamingResponse:
    n = int(request.query_params.get("n", "10000"))
    batch = int(request.query_params.get("batch", "1000"))
    chunks = built(n, batch)

    async def body():
        yield b'retry: 1000\n: limit\n\nevent: snapshot\ndata: {"head_seq":%d}\n\n' % n
        for chunk in chunks:
            yield chunk

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


app = Starlette(routes=[Route("/frames", frames)])

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
