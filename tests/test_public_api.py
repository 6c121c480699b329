"""The package's public front: nothing leaks, nothing is forgotten."""

from __future__ import annotations

import tether


def test_all_is_sorted_and_complete() -> None:
    assert tether.__all__ == sorted(tether.__all__)
    public = {n for n in dir(tether) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(tether, n)).__name__ == "module"}
    assert public - modules == set(tether.__all__) - {"__version__"}
    for name in tether.__all__:
        assert getattr(tether, name) is not None
