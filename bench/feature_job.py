"""Benchmark the feature job that feeds every recommender: 10M events -> CSR interaction matrix.

Writes an event log shaped like the generator's (string ids, power-law item popularity, event types,
timestamps, quantities) to a temporary Parquet dataset, then in a fresh child process times reading
it and `features.interactions.build_interactions` (with time decay), and reports its peak RSS.
Targets: <= 15 s and <= 3 GB on 2 cores. Run:
    .venv/bin/python -m bench.feature_job [--events 10000000]
Writes bench/results/feature_job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import write_result

TARGET_SECONDS = 15.0
TARGET_RSS_MB = 3072.0

CHILD = """
import json, resource, sys, time
import pandas as pd
from features.interactions import build_interactions
t0 = time.perf_counter()
events = pd.read_parquet(sys.argv[1], columns=["shopper_id", "product_id", "ts", "event_type", "quantity"])
t1 = time.perf_counter()
data = build_interactions(events, user_col="shopper_id", item_col="product_id", value_col="quantity",
                          half_life_days=30.0)
t2 = time.perf_counter()
print(json.dumps({"read_seconds": t1 - t0, "build_seconds": t2 - t1, "total_seconds": t2 - t0,
                  "users": data.n_users, "items": data.n_items, "nnz": int(data.matrix.nnz),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), 7, "0")
    return pc.binary_join_element_wise(prefix, text, "")


def write_events(path: Path, n_events: int, n_users: int, n_items: int, seed: int = 0) -> None:
    """A synthetic interaction log in Parquet part files of 2M rows."""
    rng = np.random.default_rng(seed)
    popularity = (1.0 + rng.permutation(n_items)) ** -0.9
    cum = np.cumsum(popularity / popularity.sum())
    activity = rng.lognormal(0.0, 1.0, n_users)
    cum_u = np.cumsum(activity / activity.sum())
    start = np.datetime64("2025-08-01T00:00:00", "us").astype(np.int64)
    kinds = pa.array(["view", "favorite", "cart", "purchase"])
    path.mkdir(parents=True)
    for part, lo in enumerate(range(0, n_events, 2_000_000)):
        n = min(2_000_000, n_events - lo)
        users = np.minimum(np.searchsorted(cum_u, rng.random(n)), n_users - 1)
        items = np.minimum(np.searchsorted(cum, rng.random(n)), n_items - 1)
        kind = rng.choice(4, n, p=[0.72, 0.04, 0.16, 0.08])
        table = pa.table(
            {
                "event_id": _ids("E", lo + np.arange(n)),
                "ts": pa.array(start + rng.integers(0, 122 * 86_400 * 10**6, n), pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "shopper_id": _ids("U", users),
                "product_id": _ids("P", items),
                "event_type": kinds.take(pa.array(kind)),
                "quantity": pa.array(np.where(kind == 3, 1 + rng.poisson(0.3, n), 1), pa.int32()),
            }
        )
        pq.write_table(table, path / f"part-{part:05d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "events"
        write_events(data, args.events, args.users, args.items)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(data)],
            capture_output=True,
            text=True,
            check=True,
            env={"OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        load_average_1min=os.getloadavg()[0],
        events=args.events,
        target_seconds=TARGET_SECONDS,
        target_peak_rss_mb=TARGET_RSS_MB,
        within_targets=result["total_seconds"] <= TARGET_SECONDS and result["peak_rss_mb"] <= TARGET_RSS_MB,
    )
    print(
        f"{'events':>11} {'users':>9} {'items':>8} {'nnz':>11} {'read s':>7} {'build s':>8} {'total s':>8} "
        f"{'peak RSS MB':>11}"
    )
    print(
        f"{args.events:>11,} {result['users']:>9,} {result['items']:>8,} {result['nnz']:>11,} "
        f"{result['read_seconds']:>7.2f} {result['build_seconds']:>8.2f} {result['total_seconds']:>8.2f} "
        f"{result['peak_rss_mb']:>11.0f}"
    )
    print(
        f"targets: <= {TARGET_SECONDS:.0f} s, <= {TARGET_RSS_MB:.0f} MB -> "
        f"{'met' if result['within_targets'] else 'NOT met'}"
    )
    write_result("feature_job", result)


if __name__ == "__main__":
    main()
