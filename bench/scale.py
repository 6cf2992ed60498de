"""Scaling curve of the feature job: time and peak memory, in-memory pandas vs Dask in-process vs a
Dask LocalCluster of 1 and 2 workers.

Per curve point, generates a slice of the `large` marketplace (`--parts` shopper blocks of 10,000
shoppers, about 0.5M events each, the full 200k-product catalogue), then runs each mode in a fresh
child process (the Dask job uses one partition per block, so a partition stays ~0.5M events):
- `pandas`: the in-memory baseline (`read_marketplace`, `shopper_features`, `product_features`,
  `build_interactions` on the whole log), what `crosscart features build` does today;
- `dask`: `features.distributed.run_feature_job` in-process (synchronous scheduler, disk shuffle);
- `local:1`, `local:2`: the same job on a LocalCluster of 1 / 2 single-threaded worker processes.
Peak memory is the peak of the summed RSS of the child and all its descendants (the workers),
sampled every 50 ms by `bench.measure`, which also records the largest single worker's peak.
Times are quoted as ratios to the pandas baseline of the same run. Run:
    nice .venv/bin/python -m bench.scale [--parts 2,4] [--modes pandas,dask,local:1,local:2] [--keep]
Writes bench/results/scale.json after every point (`--keep` keeps the points of other sizes, or of the
same size from an older generator (another event count), and in a re-run point the runs of the modes
not run again, marked `earlier_run`; ratios are always to the baseline of the run that measured them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench import RESULTS_DIR, write_result
from bench.measure import measure


def feature_job(mode: str, data: str, out: str) -> dict:
    """One mode of the feature job on `data` (run in a child by `bench.measure`)."""
    import time

    if mode == "pandas":
        import pandas as pd

        from features.interactions import build_interactions
        from features.tables import product_features, read_marketplace, shopper_features

        m = read_marketplace(data)
        as_of = m["events"]["ts"].max() + pd.Timedelta(microseconds=1)
        ev, products = m["events"], m["products"]
        shopper_features(ev, products, as_of, shoppers=m["shoppers"], categories=m["categories"])
        product_features(m["events"], m["products"], as_of, categories=m["categories"])
        ev = m["events"][m["events"]["event_type"].isin(["view", "favorite", "cart", "purchase"])]
        build_interactions(
            ev, user_col="shopper_id", item_col="product_id", value_col=None, half_life_days=30.0, as_of=as_of
        )
        return {}
    from features.cluster import dask_client
    from features.distributed import run_feature_job

    with dask_client(None if mode == "dask" else mode) as client:
        t0 = time.perf_counter()  # cluster start-up is not the job
        run_feature_job(data, out, client=client, half_life_days=30.0)
        return {"seconds": time.perf_counter() - t0}


def run_point(parts: int, modes: list[str]) -> dict:
    """One point of the curve: a `parts`-block slice of `large`, every mode in a fresh child process."""
    from features.synth.generator import generate_marketplace

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "market"
        manifest = generate_marketplace(data, "large", seed=0, max_parts=parts)
        for mode in modes:
            run = measure("bench.scale:feature_job", mode, data, Path(tmp) / f"out-{mode}", timeout=3600)
            runs.append(
                {
                    "mode": mode,
                    "seconds": run["seconds"],
                    "cpu_seconds": run["cpu_seconds"],
                    "peak_rss_mb": run["peak_rss_mb"],
                    "peak_worker_rss_mb": run["peak_worker_rss_mb"],
                }
            )
    base = runs[0]
    for r in runs:
        r["time_vs_" + base["mode"]] = r["seconds"] / base["seconds"]
        r["memory_vs_" + base["mode"]] = r["peak_rss_mb"] / base["peak_rss_mb"]
    return {
        "events": manifest["counts"]["events"],
        "shoppers": manifest["counts"]["shoppers.parquet"],
        "products": manifest["counts"]["products.parquet"],
        "parts": parts,
        "baseline": base["mode"],
        "load_average_1min_after": os.getloadavg()[0],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="2", help="comma-separated shopper-block counts (curve points)")
    parser.add_argument("--modes", default="pandas,dask,local:1,local:2", help="the first is the baseline")
    parser.add_argument("--keep", action="store_true", help="keep the other points in scale.json")
    args = parser.parse_args()
    modes = args.modes.split(",")
    points = []
    if args.keep and (RESULTS_DIR / "scale.json").exists():
        points = json.loads((RESULTS_DIR / "scale.json").read_text())["points"]
    head = ["seconds", "cpu s", "peak MB", "worker MB", "time x", "memory x"]
    print(f"{'events':>10} {'mode':>8} " + " ".join(f"{h:>9}" for h in head))
    for parts in [int(p) for p in args.parts.split(",")]:
        point = run_point(parts, modes)
        for old in [p for p in points if (p["parts"], p["events"]) == (parts, point["events"])]:
            kept = [{**r, "earlier_run": True} for r in old["runs"] if r["mode"] not in modes]
            point = {**point, "runs": kept + point["runs"]}
        same = [p for p in points if (p["parts"], p["events"]) == (parts, point["events"])]
        points = sorted(  # a point of an older generator (other event count) stays as it was
            [p for p in points if p not in same] + [point], key=lambda p: (p["parts"], p["events"])
        )
        for r in point["runs"]:
            cpu, worker = r.get("cpu_seconds") or 0, r.get("peak_worker_rss_mb") or 0
            ratios = [r.get(f"{what}_vs_{point['baseline']}") for what in ("time", "memory")]
            print(
                f"{point['events']:>10,} {r['mode']:>8} {r['seconds']:>9.1f} {cpu:>9.1f} "
                f"{r['peak_rss_mb']:>9.0f} {worker:>9.0f} "
                + " ".join("" if x is None else f"{x:>9.2f}" for x in ratios),
                flush=True,
            )
        write_result("scale", {"cpu_count": os.cpu_count(), "points": points})  # after every point


if __name__ == "__main__":
    main()
