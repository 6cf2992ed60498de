"""Benchmarks: each `bench/<name>.py` prints a table and writes `bench/results/<name>.json`."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: object) -> Path:
    """Write `result` as `bench/results/<name>.json` (indented, newline-terminated) and say where."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return out
