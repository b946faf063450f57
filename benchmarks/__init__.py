"""Benchmark scripts (not tests): `python benchmarks/run.py` is what `make bench` runs."""
