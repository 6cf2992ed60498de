"""Benchmark the synthetic marketplace generator: `demo` wall time and peak memory, and `large` slices.

Each run happens in a fresh child process so its peak RSS is its own. Run:
    .venv/bin/python -m bench.synth [--large-parts 2 6] [--large-full]
Writes bench/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import write_result

CHILD = """
import json, resource, sys, time
from features.synth import generate_marketplace
t = time.perf_counter()
parts = None if sys.argv[3] == "all" else int(sys.argv[3])
m = generate_marketplace(sys.argv[1], sys.argv[2], seed=0, max_parts=parts)
print(json.dumps({"seconds": time.perf_counter() - t, "events": m["counts"]["events"],
                  "shoppers": m["counts"]["shoppers.parquet"], "parts": m["parts"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(scale: str, parts: str) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = f"{work}/market"  # generated as a link inside `work`, removed with it
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, out, scale, parts],
            capture_output=True,
            text=True,
            check=True,
            env={"OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        load_average_1min=os.getloadavg()[0],
        scale=scale,
        requested_parts=parts,
        output_mb=size / 2**20,
        events_per_second=result["events"] / result["seconds"],
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--large-parts",
        type=int,
        nargs="*",
        default=[2, 6],
        help="large-scale slices to run (shopper blocks of 10,000 each)",
    )
    parser.add_argument("--large-full", action="store_true", help="also generate the whole large scale")
    args = parser.parse_args()
    runs = [run("demo", "all")] + [run("large", str(p)) for p in args.large_parts]
    if args.large_full:
        runs.append(run("large", "all"))
    print(
        f"{'scale':<6} {'parts':>5} {'shoppers':>9} {'events':>11} {'seconds':>8} {'events/s':>10} "
        f"{'peak RSS MB':>11} {'output MB':>9}"
    )
    for r in runs:
        print(
            f"{r['scale']:<6} {r['parts']:>5} {r['shoppers']:>9,} {r['events']:>11,} {r['seconds']:>8.1f} "
            f"{r['events_per_second']:>10,.0f} {r['peak_rss_mb']:>11.0f} {r['output_mb']:>9.1f}"
        )
    write_result("synth", {"runs": runs, "targets": {"demo_seconds": 60, "large_peak_rss_mb": 4096}})


if __name__ == "__main__":
    main()
