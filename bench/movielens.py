"""MovieLens 100K under the Microsoft Recommenders protocol, beside their published table.

Protocol: stratified-item:0.75:42 split (must give 75,066 / 24,934 rows), k = 10, seen items excluded,
every test rating relevant. Also times the interaction-matrix builder on a synthetic 10M-event log in
a child process (wall and CPU seconds; peak RSS during the build, reset after generating the log,
Linux only). Run:
    .venv/bin/python -m bench.movielens [--data PATH/u.data] [--models popularity,ease] [--skip-builder]
Writes bench/results/movielens.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench import write_result

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
EXPECTED_SPLIT = (75_066, 24_934)

# Microsoft Recommenders README, ML-100k, k=10: MAP, nDCG@10, Precision@10, Recall@10.
PUBLISHED = {
    "BiVAE": (0.146126, 0.475077, 0.411771, 0.219145),
    "BPR": (0.132478, 0.441997, 0.388229, 0.212522),
    "NCF": (0.107720, 0.396118, 0.347296, 0.180775),
    "SAR": (0.110591, 0.382461, 0.330753, 0.176385),
    "LightGCN": (0.088526, 0.419846, 0.379626, 0.144336),
    "ALS (Spark)": (0.004732, 0.044239, 0.048462, 0.017796),
}
ACCURACY = ("map", "ndcg@10", "precision@10", "recall@10")

BUILDER_CHILD = """
import json, sys, time
import numpy as np, pandas as pd
from features.interactions import build_interactions
n, n_users, n_items = int(sys.argv[1]), 500_000, 100_000
rng = np.random.default_rng(0)
def draw(labels):
    return pd.Categorical.from_codes(rng.integers(0, len(labels), n), labels).astype("str")
events = pd.DataFrame({
    "user_id": draw([f"u{i}" for i in range(n_users)]),
    "item_id": draw([f"p{i}" for i in range(n_items)]),
    "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
    "event_type": draw(["view", "cart", "favorite", "purchase"]),
})
def rss_mb(field):
    line = next(x for x in open("/proc/self/status") if x.startswith(field))
    return int(line.split()[1]) / 1024
generation_peak = rss_mb("VmHWM:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak so the build's own peak is measured
before = rss_mb("VmRSS:")
started, cpu = time.perf_counter(), time.process_time()
data = build_interactions(events, half_life_days=30)
seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"events": n, "users": data.n_users, "items": data.n_items, "pairs": int(data.matrix.nnz),
                  "seconds": seconds, "cpu_seconds": cpu_seconds, "generation_peak_rss_mb": generation_peak,
                  "rss_before_build_mb": before, "peak_rss_mb": rss_mb("VmHWM:")}))
"""


def run_movielens(data: Path, names: list[str], k: int = 10) -> dict:
    from experiments.splits import split_events
    from training.evaluate_recommender import evaluate_models, load_dataset, prepare

    dataset = load_dataset(f"movielens:{data}")
    split = "stratified-item:0.75:42"
    train, test = split_events(dataset.events, split)
    counts = (len(train), len(test))
    if counts != EXPECTED_SPLIT:
        raise SystemExit(f"split gives {counts} rows, the benchmark protocol needs {EXPECTED_SPLIT}")
    setup = prepare(dataset, split)
    rows = []
    for row in evaluate_models(names, setup, k):
        row["ratio_to_bivae"] = {m: row[m] / ref for m, ref in zip(ACCURACY, PUBLISHED["BiVAE"], strict=True)}
        rows.append(row)
        print(f"  {row['model']}: map {row['map']:.4f} fit {row['fit_seconds']:.1f}s", flush=True)
    report = dataset.report.summary().replace(str(data), data.name)  # no machine paths in results
    return {"data": data.name, "report": report, "split": split,
            "split_rows": {"train": counts[0], "test": counts[1]}, "k": k, "rows": rows}  # fmt: skip


def run_builder(n_events: int) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", BUILDER_CHILD, str(n_events)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"builder benchmark failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["targets"] = {"seconds": 15, "peak_rss_mb": 3072}
    return result


def print_table(result: dict) -> None:
    header = f"{'model':<16} {'MAP':>8} {'nDCG@10':>8} {'P@10':>8} {'R@10':>8} {'MAP/BiVAE':>9} {'cover':>6} "
    print(header + f"{'novelty':>7} {'fit s':>7} {'pred s':>7}")
    for row in result["rows"]:
        print(
            f"{row['model']:<16} " + " ".join(f"{row[m]:>8.4f}" for m in ACCURACY)
            + f" {row['ratio_to_bivae']['map']:>9.2f} {row['coverage']:>6.3f} {row['novelty']:>7.2f}"
            f" {row['fit_seconds']:>7.2f} {row['predict_seconds']:>7.2f}"
        )  # fmt: skip
    for name, values in PUBLISHED.items():
        ratio = values[0] / PUBLISHED["BiVAE"][0]
        print(f"{'[MS] ' + name:<16} " + " ".join(f"{v:>8.4f}" for v in values) + f" {ratio:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MovieLens 100K u.data")
    parser.add_argument("--models", default="popularity,itemknn,als,bpr,ease,ranker")
    parser.add_argument("--builder-events", type=int, default=10_000_000)
    parser.add_argument("--skip-builder", action="store_true", help="skip the 10M-event builder timing")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"MovieLens 100K not found at {args.data} (pass --data)")

    result = run_movielens(args.data, [n.strip() for n in args.models.split(",") if n.strip()])
    result["published"] = {name: dict(zip(ACCURACY, v, strict=True)) for name, v in PUBLISHED.items()}
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "load_average": os.getloadavg()}  # fmt: skip
    print_table(result)
    print(f"split rows: {result['split_rows']} (expected {EXPECTED_SPLIT})")
    if not args.skip_builder:
        builder = run_builder(args.builder_events)
        result["builder"] = builder
        print(
            f"builder: {builder['events']:,} events -> {builder['users']:,} x {builder['items']:,} CSR,"
            f" {builder['pairs']:,} pairs in {builder['seconds']:.1f} s ({builder['cpu_seconds']:.1f} s CPU),"
            f" peak RSS {builder['peak_rss_mb']:.0f} MB during the build, input frame included"
            f" ({builder['rss_before_build_mb']:.0f} MB before; targets: <= 15 s, <= 3072 MB)"
        )
    write_result("movielens", result)


if __name__ == "__main__":
    main()
