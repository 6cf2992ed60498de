"""Experiments round 2: peeking, interleaving and off-policy evaluation checked against known truth.

1. Peeking: 500 A/A tests looked at after each of 14 daily batches (14,000 shoppers per test, the
   `recommender` scenario). Criteria: group-sequential and mSPRT false-positive rate 5% +/- 2 points
   (mSPRT at the threshold calibrated for the 14 planned looks, the truncated mSPRT; the
   uncalibrated 1/alpha threshold, valid under any monitoring, is reported for contrast), naive
   peeking at fixed-horizon p-values above 15%; power against a +20% click-rate effect per method,
   with the fixed test read once at the end as the baseline.
2. Interleaving: two item-kNN rankers (BM25 vs cosine weighting) fitted on a generated marketplace,
   shoppers clicking and buying by the generator's true tastes. Criterion: at 80% power interleaving
   reaches the same decision as the A/B test with at least 10x fewer shoppers. A second, easy pair
   (item kNN vs popularity) is reported for contrast.
3. Off-policy: popularity logs pages with epsilon mixing; the item-kNN candidate's click and purchase
   rate per slot are estimated by IPS, SNIPS and DR. Criterion: the 95% interval covers the true online
   rate in at least 90% of 200 runs. The candidate's offline ranking metrics (on a time split of the
   same marketplace's events) are reported next to the estimates.
Run: .venv/bin/python -m bench.ab_round2 [--runs 500] [--ope-runs 200] [--pages 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench import write_result
from experiments.ab.interleaving_simulation import compare
from experiments.ab.offpolicy_simulation import coverage
from experiments.ab.sequential_simulation import simulate_peeking
from experiments.ab.simulation import SCENARIOS


def peeking(runs: int, seed: int) -> dict:
    rows = {}
    for method in ("fixed", "group-sequential", "msprt"):
        aa = simulate_peeking(SCENARIOS["recommender"], method=method, runs=runs, looks=14, seed=seed)
        power = simulate_peeking(
            SCENARIOS["recommender"], method=method, runs=runs, looks=14, effect=0.2, seed=seed + 1
        )
        rows[method] = {
            "false_positive_rate": aa["false_positive_rate"],
            "power": power["power"],
            "mean_stopping_look_under_effect": power["mean_stopping_look"],
            "fixed_read_once_false_positive_rate": aa["fixed_final_look_rejection_rate"],
            "fixed_read_once_power": power["fixed_final_look_rejection_rate"],
            **({"boundaries": aa["boundaries"]} if "boundaries" in aa else {}),
            **(
                {
                    "confidence_sequence_coverage": aa["confidence_sequence_coverage"],
                    "threshold_alpha": aa["threshold_alpha"],
                    "anytime_threshold_false_positive_rate": aa["anytime_threshold_rejection_rate"],
                    "anytime_threshold_power": power["anytime_threshold_rejection_rate"],
                }
                if method == "msprt"
                else {}
            ),
        }
    rows["criteria"] = {
        "group_sequential_fpr_within_5pct_2pts": abs(rows["group-sequential"]["false_positive_rate"] - 0.05)
        <= 0.02,
        "msprt_fpr_within_5pct_2pts": abs(rows["msprt"]["false_positive_rate"] - 0.05) <= 0.02,
        "naive_peeking_fpr_above_15pct": rows["fixed"]["false_positive_rate"] > 0.15,
    }
    return rows


def offline_metrics(marketplace: str, models: dict) -> dict:
    """Precision/recall/nDCG@10 of each model on the last 20% of the marketplace's purchase history."""
    import pandas as pd

    from experiments.metrics import ranking_metrics
    from features.interactions import build_interactions

    events = pd.read_parquet(
        f"{marketplace}/events", columns=["shopper_id", "product_id", "event_type", "ts"]
    )
    events = events[
        events["product_id"].notna() & events["event_type"].isin(["view", "favorite", "cart", "purchase"])
    ]
    cut = events["ts"].quantile(0.8)
    train = build_interactions(events[events["ts"] < cut], user_col="shopper_id", item_col="product_id")
    test = events[(events["ts"] >= cut) & (events["event_type"] == "purchase")]
    truth = test.groupby("shopper_id")["product_id"].apply(set).to_dict()
    users = [u for u in truth if u in train.user_index]
    out = {}
    for name, model in models.items():
        model.fit(train)
        recs = dict(zip(users, ([i for i, _ in r] for r in model.recommend(users, n=10)), strict=True))
        out[name] = ranking_metrics(recs, truth, k=10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--il-runs", type=int, default=200)
    parser.add_argument("--ope-runs", type=int, default=200)
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    from experiments.ab.pages import build_world
    from features.synth.generator import generate_marketplace
    from models.recommenders.itemknn import ItemKNNRecommender
    from models.recommenders.popularity import PopularityRecommender

    def models():
        return {
            "knn_bm25": ItemKNNRecommender(k=50),
            "knn_cosine": ItemKNNRecommender(k=50, weighting="cosine"),
            "popularity": PopularityRecommender(),
        }

    timings = {}
    started = time.perf_counter()
    result = {"peeking": peeking(args.runs, args.seed)}
    timings["peeking_s"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as work:
        tmp = f"{work}/market"  # generated as a link inside `work`, removed with it
        generate_marketplace(tmp, "tiny", seed=args.seed)
        world = build_world(tmp, models())
        offline = offline_metrics(tmp, models())
    t = time.perf_counter()
    close = compare(world, "knn_bm25", "knn_cosine", runs=args.il_runs, seed=args.seed)
    easy = compare(world, "knn_bm25", "popularity", runs=args.il_runs, seed=args.seed + 1)
    result["interleaving"] = {
        "close_pair": close,
        "easy_pair": easy,
        "criteria": {
            "close_pair_ratio_at_least_10x": close["shopper_ratio"] >= 10,
            "close_pair_interleaving_power_at_least_75pct": close["interleaving_power"] >= 0.75,
            "close_pair_no_wrong_calls": close["interleaving_wrong_calls"] == 0,
            "close_pair_same_decision_when_both_call": close["agreement_when_both_call"] >= 0.99,
        },
    }
    timings["interleaving_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ope = coverage(
        world,
        "popularity",
        "knn_bm25",
        runs=args.ope_runs,
        pages=args.pages,
        epsilon=args.epsilon,
        seed=args.seed,
    )
    ope["offline_metrics"] = offline
    ope["criteria"] = {
        f"{metric}_{est}_coverage_at_least_90pct": ope[metric][est]["coverage"] >= 0.9
        for metric in ("ctr", "purchase_rate")
        for est in ("ips", "snips", "dr")
    }
    result["offpolicy"] = ope
    timings["offpolicy_s"] = time.perf_counter() - t
    result["timings"] = timings

    p = result["peeking"]
    print(f"{'peeking (500 A/A x 14 looks)':<34} {'FPR':>6} {'power +20%':>11}")
    for method in ("fixed", "group-sequential", "msprt"):
        print(f"  {method:<32} {p[method]['false_positive_rate']:>6.3f} {p[method]['power']:>11.3f}")
    print(
        f"  msprt, uncalibrated 1/alpha       {p['msprt']['anytime_threshold_false_positive_rate']:>6.3f} "
        f"{p['msprt']['anytime_threshold_power']:>11.3f}"
    )
    print(
        f"  fixed read once at the end        {p['fixed']['fixed_read_once_false_positive_rate']:>6.3f} "
        f"{p['fixed']['fixed_read_once_power']:>11.3f}"
    )
    for label, r in (("close pair", close), ("easy pair", easy)):
        print(
            f"interleaving {label}: A/B {r['ab_shoppers']} shoppers (power {r['ab_power']:.2f}) vs "
            f"interleaving {r['interleaving_shoppers']} (power {r['interleaving_power']:.2f}): "
            f"{r['shopper_ratio']:.1f}x fewer"
        )
    for metric in ("ctr", "purchase_rate"):
        row = "  ".join(
            f"{e} {ope[metric][e]['mean_estimate']:.4f} cov {ope[metric][e]['coverage']:.2f}"
            for e in ("ips", "snips", "dr")
        )
        print(
            f"off-policy {metric}: truth {ope['truth'][metric]:.4f}  {row}  "
            f"dm {ope[metric]['dm']['mean_estimate']:.4f}"
        )
    print(f"offline metrics: {offline}")
    write_result("ab_round2", result)


if __name__ == "__main__":
    main()
