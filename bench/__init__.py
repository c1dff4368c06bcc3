"""Benchmarks and long reliability drills of aigen (not part of the test suite's pass/fail)."""
