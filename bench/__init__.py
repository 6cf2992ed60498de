"""Benchmarks: each `bench/<name>.py` prints a table and writes `bench/results/<name>.json`."""
