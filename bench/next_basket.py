"""Repeat-aware recommenders against popularity, with repeats counted.

Three settings, each quoted as ratios against popularity measured in the same run:
1. the generated marketplace (`--scale`), `evaluate recommender --include-seen` on a global temporal
   80/20 split (nDCG@10, the issue's measure for grocery-like data), and the next-basket protocol
   (a basket = one checkout session);
2. a grocery-like simulation with messy baskets (written as a CSV with string ids, a day-first time
   layout, duplicate rows and missing values, and read back through the loader): most items bought
   once, baskets of 1 to 150 items, shoppers with 2 to 50 baskets, each with a few staples rebought
   at their own rate; both protocols again;
3. a harder grocery log (`bench.realistic.hard_grocery_csv`: Zipf ~1 over 20k items, heavy-tailed
   basket sizes and gaps, a third of shoppers with one order, seasonal and drifting items, items launched
   during the log, dates without times), next-basket protocol only, with each model's figures for the
   test shoppers with 1, 2-3 and 4+ baskets of history;
4. TIFU-KNN's fit time on 15k shoppers x 12k items (the target is < 30 s on 2 cores).
Run: `.venv/bin/python -m bench.next_basket [--scale tiny|demo] [--shoppers 3000] [--hard-shoppers 4000]`.
Writes bench/results/next_basket.json. Timings depend on the machine's load (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import write_result
from bench.realistic import write_messy_csv

RECOMMENDER_MODELS = ("popularity", "personal-topfreq", "gp-topfreq", "tifuknn", "als", "ranker")
BASKET_MODELS = ("popularity", "personal-topfreq", "gp-topfreq", "tifuknn", "ranker")


def grocery_csv(path: Path, n_shoppers: int, n_items: int = 4000, seed: int = 0) -> Path:
    """A grocery-like purchase log: staples rebought at a per-shopper rate, the rest explored once."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.1
    popularity /= popularity.sum()
    category = rng.integers(0, 200, n_items)
    by_category = [np.flatnonzero(category == c) for c in range(200)]
    rows = []
    for s in range(n_shoppers):
        n_baskets = int(np.clip(rng.geometric(0.08) + 1, 2, 50))
        staples = rng.choice(n_items, size=int(rng.integers(3, 16)), replace=False, p=popularity)
        rate = rng.beta(2.0, 3.0, len(staples))
        liked = rng.choice(200, size=3, replace=False)
        gap = rng.uniform(3.0, 14.0)
        day = rng.uniform(0, 60) + np.cumsum(rng.exponential(gap, n_baskets))
        for b in range(n_baskets):
            size = int(np.clip(rng.lognormal(np.log(8.0), 0.9), 1, 150))
            items = staples[rng.random(len(staples)) < rate].tolist()
            n_new = max(size - len(items), 0)
            local = rng.random(n_new) < 0.6
            pool = np.concatenate([by_category[c] for c in liked])
            items += rng.choice(pool, size=int(local.sum())).tolist()
            items += rng.choice(n_items, size=int((~local).sum()), p=popularity).tolist()
            stamp = pd.Timestamp("2025-01-01") + pd.Timedelta(days=float(day[b]))
            for item in items:
                rows.append(
                    (f"C{s:06d}", f"SKU-{item:05d}", f"T{s:06d}-{b:02d}", stamp.strftime("%d/%m/%Y %H:%M"))
                )
    return write_messy_csv(rows, path, rng, seed)


def ratios(rows: list[dict], metric: str) -> dict[str, float]:
    base = next(r[metric] for r in rows if r["model"] == "popularity")
    return {r["model"]: (r[metric] / base if base else float("nan")) for r in rows}


def keep(row: dict, keys: tuple[str, ...]) -> dict:
    return {k: row[k] for k in keys if k in row}


RECOMMENDER_KEYS = ("model", "ndcg@10", "recall@10", "repeat_ndcg@10", "explore_ndcg@10", "repeat_recall@10",
                    "explore_recall@10", "n_users", "fit_seconds", "predict_seconds")  # fmt: skip
BASKET_KEYS = ("model", "recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10",
               "repeat_share@10", "n_users", "fit_seconds", "predict_seconds")  # fmt: skip


def run_protocols(dataset, basket_dataset, label: str, recommender_models, basket_models) -> dict:
    from training.evaluate_recommender import evaluate_models, prepare
    from training.next_basket import evaluate_next_basket_models, prepare_next_basket

    out = {}
    setup = prepare(dataset, "temporal:0.8", include_seen=True)
    rows = []
    for row in evaluate_models(recommender_models, setup, 10):
        rows.append(keep(row, RECOMMENDER_KEYS))
        print(f"[{label} temporal --include-seen] {rows[-1]}", flush=True)
    out["temporal_include_seen"] = {"rows": rows, "ndcg@10_vs_popularity": ratios(rows, "ndcg@10")}
    nb = prepare_next_basket(basket_dataset, "last-basket:0.2:42")
    rows = []
    for row in evaluate_next_basket_models(basket_models, nb, 10):
        rows.append(keep(row, BASKET_KEYS))
        print(f"[{label} next-basket] {rows[-1]}", flush=True)
    out["next_basket"] = {
        "rows": rows,
        "recall@10_vs_popularity": ratios(rows, "recall@10"),
        "ndcg@10_vs_popularity": ratios(rows, "ndcg@10"),
        "test_shoppers": len(nb.targets),
    }
    return out


HISTORY_SEGMENTS = (("1", 1, 1), ("2-3", 2, 3), ("4+", 4, 10**9))  # baskets of history


def run_segmented(basket_dataset, label: str, basket_models) -> dict:
    """The next-basket protocol with each model's figures overall and per history length."""
    from experiments.repeat_metrics import basket_metrics
    from models.recommenders.baskets import basket_table
    from training.next_basket import evaluate_next_basket, prepare_next_basket

    nb = prepare_next_basket(basket_dataset, "last-basket:0.2:42")
    table = basket_table(nb.train)
    n_baskets = table.groupby("u")["b"].max() + 1
    users = sorted(nb.targets)
    history = {u: int(n_baskets.get(nb.train.user_index[u], 0)) for u in users}
    segments = {name: [u for u in users if lo <= history[u] <= hi] for name, lo, hi in HISTORY_SEGMENTS}
    rows = []
    for name in basket_models:
        lists = {}
        row = keep(evaluate_next_basket(_Recording(name, lists), nb, 10, name=name), BASKET_KEYS)
        for segment, members in segments.items():
            part = basket_metrics(lists, {u: nb.targets[u] for u in members}, nb.history, 10)
            row[f"ndcg@10_{segment}"], row[f"recall@10_{segment}"] = part["ndcg@10"], part["recall@10"]
        rows.append(row)
        print(f"[{label} next-basket] {row}", flush=True)
    return {
        "next_basket": {
            "rows": rows,
            "recall@10_vs_popularity": ratios(rows, "recall@10"),
            "ndcg@10_vs_popularity": ratios(rows, "ndcg@10"),
            "test_shoppers": len(users),
            "test_shoppers_by_history": {segment: len(members) for segment, members in segments.items()},
        }
    }


class _Recording:
    """A model that keeps the lists it recommends (for the per-segment figures)."""

    def __init__(self, name: str, lists: dict):
        from training.evaluate_recommender import make_model

        self.model, self.lists, self.name = make_model(name, None), lists, name

    def fit(self, data):
        self.model.fit(data)
        return self

    def recommend(self, users, n, exclude_seen):
        ranked = self.model.recommend(users, n=n, exclude_seen=exclude_seen)
        self.lists.update({u: [item for item, _ in items] for u, items in zip(users, ranked, strict=True)})
        return ranked


def tifu_fit_seconds(n_users: int = 15_000, n_items: int = 12_000, n_jobs: int = 2) -> dict:
    from features.interactions import InteractionData
    from models.recommenders import make_recommender

    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(n_users), rng.integers(2, 30, n_users))
    size = rng.integers(1, 15, len(owner))
    user, basket = np.repeat(owner, size), np.repeat(np.arange(len(owner)), size)
    item = (rng.zipf(1.3, len(user)) - 1) % n_items
    import scipy.sparse as sp

    matrix = sp.csr_matrix((np.ones(len(user), np.float32), (user, item)), shape=(n_users, n_items))
    events = pd.DataFrame({"user_id": user.astype(str), "item_id": item.astype(str), "basket_id": basket})
    events["ts"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(basket, unit="h")
    data = InteractionData(
        matrix=matrix, user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
        events=events,
    )  # fmt: skip
    started = time.perf_counter()
    make_recommender("tifuknn", n_jobs=n_jobs).fit(data)
    seconds = time.perf_counter() - started
    return {"users": n_users, "items": n_items, "purchases": len(events), "n_jobs": n_jobs,
            "fit_seconds": seconds, "load_average_1min": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="demo", choices=("tiny", "demo"))
    parser.add_argument("--shoppers", type=int, default=3000, help="shoppers in the grocery simulation")
    parser.add_argument("--hard-shoppers", type=int, default=4000, help="shoppers in the harder grocery log")
    parser.add_argument(
        "--skip", nargs="*", default=(), choices=("synthetic", "grocery", "grocery_hard", "tifu"),
        help="parts not run; their figures are kept from the last results file",
    )  # fmt: skip
    args = parser.parse_args()

    from bench import RESULTS_DIR
    from features.synth import generate_marketplace
    from training.evaluate_recommender import load_dataset
    from training.next_basket import load_basket_data

    previous = RESULTS_DIR / "next_basket.json"
    kept = json.loads(previous.read_text()) if args.skip and previous.is_file() else {}
    # a skipped part keeps its figures from the last results file
    result = {"load_average_1min_start": os.getloadavg()[0]}
    for part in args.skip:
        key = "tifuknn_fit" if part == "tifu" else part
        if key in kept:
            result[key] = kept[key]
    with tempfile.TemporaryDirectory() as tmp:
        if "tifu" not in args.skip:
            result["tifuknn_fit"] = tifu_fit_seconds()
            print(f"[tifu fit] {result['tifuknn_fit']}", flush=True)
        if "grocery" not in args.skip:
            path = grocery_csv(Path(tmp) / "grocery.csv", args.shoppers)
            columns = {"user_col": "customer", "item_col": "sku", "time_col": "time", "value_col": "qty"}
            dataset = load_dataset(f"events:{path}", **columns)
            baskets = load_basket_data(f"events:{path}", basket_col="transaction", **columns)
            result["grocery"] = {
                "shoppers": args.shoppers,
                "load_report": baskets.report.summary().split(": ", 1)[1],
                **run_protocols(dataset, baskets, "grocery", RECOMMENDER_MODELS, BASKET_MODELS),
            }
        if "grocery_hard" not in args.skip:
            from bench.realistic import hard_grocery_csv

            path = hard_grocery_csv(Path(tmp) / "grocery_hard.csv", args.hard_shoppers)
            columns = {"user_col": "customer", "item_col": "sku", "time_col": "time", "value_col": "qty"}
            baskets = load_basket_data(f"events:{path}", basket_col="transaction", **columns)
            result["grocery_hard"] = {
                "shoppers": args.hard_shoppers,
                "load_report": baskets.report.summary().split(": ", 1)[1],
                **run_segmented(baskets, "grocery_hard", BASKET_MODELS),
            }
        if "synthetic" not in args.skip:
            market = Path(tmp) / "market"
            generate_marketplace(market, args.scale, seed=7)
            dataset = load_dataset(f"synthetic:{market}")
            baskets = load_basket_data(f"synthetic:{market}")
            result["synthetic"] = {
                "scale": args.scale,
                **run_protocols(dataset, baskets, "synthetic", RECOMMENDER_MODELS, BASKET_MODELS),
            }
    result["load_average_1min_end"] = os.getloadavg()[0]
    for name in ("synthetic", "grocery", "grocery_hard"):
        if name in result:
            for protocol, metric in (("temporal_include_seen", "ndcg@10"), ("next_basket", "recall@10")):
                if protocol not in result[name]:
                    continue
                part = result[name][protocol]
                print(f"\n{name} / {protocol}: {metric} vs popularity")
                for row in part["rows"]:
                    ratio = part[f"{metric}_vs_popularity"][row["model"]]
                    print(
                        f"  {row['model']:<18} {row[metric]:.4f}  x{ratio:.2f}  fit {row['fit_seconds']:.1f}s"
                    )
    if "grocery_hard" in result:
        part = result["grocery_hard"]["next_basket"]
        shoppers = part["test_shoppers_by_history"]
        print(f"\ngrocery_hard / next_basket: ndcg@10, by baskets of history (test shoppers {shoppers})")
        for row in part["rows"]:
            by = "  ".join(f"{s} {row[f'ndcg@10_{s}']:.4f}" for s, _, _ in HISTORY_SEGMENTS)
            print(f"  {row['model']:<18} {row['ndcg@10']:.4f}  {by}")
    write_result("next_basket", result)


if __name__ == "__main__":
    main()
