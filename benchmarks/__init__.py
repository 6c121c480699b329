"""Measurements with printed tables: `python -m benchmarks` (see docs/benchmarks.md)."""
