"""A started process's heap is frozen and its collector runs less often (tether/heap.py); the
garbage it makes afterwards, cycles included, is still freed: a server that runs for weeks
does not grow without bound."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.server import ROOT

# In a process of its own: freezing the test runner's heap would change every other test.
CODE = """
import gc
from tether import heap

class Node:
    alive = 0
    def __init__(self):
        Node.alive += 1
    def __del__(self):
        Node.alive -= 1

started = [Node() for _ in range(1000)]  # made before the freeze: kept
heap.freeze()
assert gc.isenabled() and gc.get_freeze_count() > 1000, gc.get_freeze_count()
most = 0
for _ in range(300_000):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    del a, b
    most = max(most, Node.alive)
print(most, Node.alive)
"""


def test_cycles_made_after_the_freeze_are_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    most, alive = map(int, out.stdout.split())
    # 600,000 nodes were made in cycles; the collector freed them as it went, a young
    # collection's worth at a time.
    assert most < 1000 + 4 * 50_000, most
    assert alive < most
