"""The `large` marketplace end to end on one machine: time and peak memory of every step.

Steps, each in a fresh child process (`bench.measure`: peak of the summed RSS of the process and its
descendants, sampled every 50 ms), in order, each reading what the previous ones wrote:
- `generate`: the `large` marketplace (`--parts` shopper blocks of 10,000 shoppers, ~0.5M events
  each; 100 blocks = all 1M shoppers, ~51M events; the full 200k-product catalogue either way);
- `features`: `features.distributed.run_feature_job` in-process (interactions, shopper and product
  feature tables as partitioned Parquet; one partition per block);
- `als`: `read_interactions` -> CSR, `ALSRecommender` (implicit, one thread);
- `ranker`: `TwoStageRanker` over ALS and popularity candidates (EASE refuses a 200k catalogue, and
  item-kNN is left out to bound the time), LightGBM in-process;
- `uplift`: the coupon effect model (`training.uplift.fit_effect_model`, X-learner) on every past
  campaign assignment, and its serving bundle;
- `batch`: `training.batch_scoring.score_all` of the ALS model (top 20 of every shopper, in chunks;
  one matrix product and one block top-n per 512 shoppers) and `score_coupon_uplift` (every
  shopper's uplift per coupon kind as of the end, a shopper partition at a time), both as Parquet.
The serving step (the API answering from the precomputed lists) is not in this benchmark.

Run (long: use `nice`, in the background, one at a time on a shared machine):
    nice -n 10 .venv/bin/python -m bench.large [--parts 100] [--work DIR] [--steps features,als]
A step whose memory passes 10 GB is stopped and recorded with `aborted: true` and its peak so far.
`--work` keeps the generated data and step outputs (default: a temporary directory); a step's inputs
must be there. Writes bench/results/large.json after every step (`large-PARTS.json` when
`--parts` is below 100, so a slice never replaces the full run).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
from pathlib import Path

from bench import RESULTS_DIR, write_result
from bench.measure import measure

STEPS = ("generate", "features", "als", "ranker", "uplift", "batch")
FULL_PARTS = 100
LIMIT_MB = 8 * 1024
ABORT_MB = 10 * 1024  # a step past this is stopped (shared machine) and recorded as aborted
ALS = {"factors": 64, "iterations": 15}


def _parts_rows(path: Path, pattern: str = "*.parquet") -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.glob(pattern)))


def generate(work: str, parts: str) -> dict:
    from features.synth.generator import generate_marketplace

    manifest = generate_marketplace(Path(work) / "market", "large", seed=0, max_parts=int(parts))
    return {k: manifest["counts"][k] for k in ("events", "shoppers.parquet", "products.parquet")}


def features(work: str) -> dict:
    from features.distributed import run_feature_job

    paths = run_feature_job(Path(work) / "market", Path(work) / "features", half_life_days=30.0)
    return {name: _parts_rows(path) for name, path in paths.items()}


def als(work: str) -> dict:
    from features.distributed import read_interactions
    from models.recommenders.factorization import ALSRecommender

    data = read_interactions(Path(work) / "features" / "interactions")
    model = ALSRecommender(**ALS).fit(data)
    with open(Path(work) / "als.pkl", "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"users": len(data.user_ids), "items": len(data.item_ids), "interactions": int(data.matrix.nnz)}


def ranker(work: str) -> dict:
    from features.distributed import read_interactions
    from models.recommenders.ranker import TwoStageRanker

    data = read_interactions(Path(work) / "features" / "interactions")
    model = TwoStageRanker(base_models=("als", "popularity"), base_params={"als": ALS}, n_folds=1)
    model.fit(data)
    with open(Path(work) / "ranker.pkl", "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"train_pairs": model.train_pairs_, "features": len(model.feature_names_)}


def uplift(work: str) -> dict:
    from training.uplift import fit_effect_model, serving_bundle

    market = Path(work) / "market"
    model, _ = fit_effect_model(market)
    bundle = serving_bundle(market, model)
    with open(Path(work) / "uplift.pkl", "wb") as f:
        pickle.dump(bundle, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"arms": [str(a) for a in model.arms_], "features": len(model.feature_names_in_)}


def batch(work: str, chunk_size: str = "5000") -> dict:
    import json as json_

    import pandas as pd

    from training.batch_scoring import score_all, score_coupon_uplift

    with open(Path(work) / "als.pkl", "rb") as f:
        model = pickle.load(f)
    lists = score_all(model, Path(work) / "lists", n=20, chunk_size=int(chunk_size))
    del model
    with open(Path(work) / "uplift.pkl", "rb") as f:
        bundle = pickle.load(f)
    market = Path(work) / "market"
    as_of = pd.Timestamp(json_.loads((market / "manifest.json").read_text())["end"])
    coupons = score_coupon_uplift(bundle, market, Path(work) / "coupon_uplift", as_of=as_of)
    return {"list_rows": _parts_rows(lists), "uplift_rows": _parts_rows(coupons)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=int, default=FULL_PARTS, help="shopper blocks (100 = all 1M)")
    parser.add_argument("--work", type=Path, default=None, help="keep data and outputs here")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)}")
    args = parser.parse_args()
    steps = args.steps.split(",")
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}; choose from {STEPS}")
    name = "large" if args.parts >= FULL_PARTS else f"large-{args.parts}"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        previous = RESULTS_DIR / f"{name}.json"
        result = json.loads(previous.read_text()) if args.work and previous.exists() else {"steps": []}
        result.update({"parts": args.parts, "limit_mb": LIMIT_MB, "cpu_count": os.cpu_count(), "als": ALS})
        if (work / "market" / "events").is_dir():  # generated by an earlier run
            result["data"] = {
                "events": _parts_rows(work / "market" / "events"),
                **{f: _parts_rows(work / "market", f) for f in ("shoppers.parquet", "products.parquet")},
            }
        print(f"{'step':>9} {'seconds':>9} {'cpu s':>9} {'peak MB':>9} {'<= 8 GB':>8}  result")
        for step in steps:
            step_args = (work, args.parts) if step == "generate" else (work,)
            run = measure(f"bench.large:{step}", *step_args, timeout=4 * 3600, abort_mb=ABORT_MB)
            row = {
                "step": step,
                "seconds": run["seconds"],
                "cpu_seconds": run["cpu_seconds"],
                "peak_rss_mb": run["peak_rss_mb"],
                "within_limit": run["peak_rss_mb"] <= LIMIT_MB,
                "load_average_1min_after": os.getloadavg()[0],
                "result": run["result"],
                "aborted": run.get("aborted", False),
            }
            result["steps"] = [s for s in result["steps"] if s["step"] != step] + [row]
            result["steps"].sort(key=lambda s: STEPS.index(s["step"]))
            if step == "generate" and not row["aborted"]:
                result["data"] = run["result"]
            print(
                f"{step:>9} {row['seconds']:>9.1f} {row['cpu_seconds']:>9.1f} {row['peak_rss_mb']:>9.0f} "
                f"{str(row['within_limit']):>8}  {json.dumps(run['result'])}",
                flush=True,
            )
            write_result(name, result)
            if row["aborted"]:
                print(f"{step} passed {ABORT_MB} MB and was stopped; the later steps need its output")
                break


if __name__ == "__main__":
    main()
