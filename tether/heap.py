"""A long-running process's heap, kept out of the garbage collector's way.

CPython's full collection walks every tracked object. A started server holds most of its
objects from the start (modules, the app, pydantic models, the provider SDKs, DBOS: about
400,000), and walking them took 250-380 ms per full collection in each API process of the
distributed benchmark. With 1,000 streams open a full collection came every few seconds,
each a pause for every stream of the process (the fan-out's p99), and with the young
collections about a third of the process's CPU.

- `gc.freeze()` moves what exists once the process has started to a permanent generation
  that collections skip. What is made later (connections, streams, turns) is collected as
  before.
- A young collection costs about the same however many objects were allocated since the
  last one (what is garbage is freed by reference counting; a collection walks the young
  objects still alive, mostly the in-flight work of open streams). At CPython's default of
  700 allocations it ran 30 times a second under fan-out; at 50,000, rarely, and cyclic
  garbage waits for at most 50,000 allocations before it is freed.

Measured on `fanout(ks=(1000,))` with 2 API processes + 2 workers (docs/benchmarks.md, "Fast
at the edges, part five"): p99 106-388 ms before, 56-87 ms after.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # allocations between young collections (CPython's default: 700)
MIDDLE = 20  # young collections between middle ones (default: 10)
OLD = 10  # middle collections between full ones, at most (default: 10)


def freeze() -> None:
    """Call once the process has started (imports done, services running): the garbage made
    while starting is collected, everything left is frozen, and the thresholds raised."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
