"""Offline evaluation of search ranking on held-out weeks of the marketplace's search logs.

Rankers are trained on the weeks before the split and compared on the held-out weeks' randomized slice
(positions drawn at random, so logged outcomes do not favour any ranker's order): each method re-orders
every shown list; nDCG@k with graded gains (purchase 3, cart 2, click 1) and MRR of the first clicked
result, over searches with at least one click. Methods: BM25 alone, popularity within the matches, the
learned ranker with position-bias correction (IPW) and the same ranker trained without it.

Clicks on the randomized slice are still examination-biased within each list, so when the log carries
the simulator's `true_attraction` (generated marketplaces do) the same lists are also graded against
that truth: nDCG@k with gain = true click probability once examined, over every randomized search.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.search_features import FEATURES
from features.synth.search_logs import SEARCH_LOGS, simulate_search_logs
from training.search_ranker import (
    SearchContext,
    fit_search_ranker,
    graded,
    log_features,
    position_propensities,
)

Progress = Callable[[str, int, int], None]
BM25 = FEATURES.index("bm25")
POPULARITY = FEATURES.index("popularity")


def ndcg_at_k(gains_in_order: np.ndarray, k: int) -> float:
    """Graded nDCG@k: sum gain / log2(rank + 1), over the ideal order of the same gains."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    top = gains_in_order[:k]
    ideal = np.sort(gains_in_order)[::-1][:k]
    best = float(ideal @ discount[: len(ideal)])
    return float(top @ discount[: len(top)]) / best if best > 0 else 0.0


def reciprocal_rank(clicked_in_order: np.ndarray) -> float:
    hits = np.flatnonzero(clicked_in_order)
    return 1.0 / (hits[0] + 1) if len(hits) else 0.0


def per_search_ndcg(
    log: pd.DataFrame, scores: dict[str, np.ndarray], k: int = 10, gains: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """nDCG@k of each method on each search (aligned across methods, for paired comparisons): graded
    outcomes over clicked searches, or the given `gains` (e.g. true attraction) over every search."""
    clicked_only = gains is None
    gains = graded(log).astype(np.float64) if gains is None else np.asarray(gains, dtype=np.float64)
    clicked = log["clicked"].to_numpy()
    position = log["position"].to_numpy()
    out: dict[str, list[float]] = {m: [] for m in scores}
    for idx in log.groupby("search_id", sort=False).indices.values():
        if clicked[idx].any() or not clicked_only:
            for method, s in scores.items():
                out[method].append(ndcg_at_k(gains[idx[np.lexsort((-position[idx], -s[idx]))]], k))
    return {m: np.asarray(v) for m, v in out.items()}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over the same searches with a 95% percentile-bootstrap interval."""
    diff = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95_low": float(lo), "ci95_high": float(hi)}


def score_lists(log: pd.DataFrame, scores: dict[str, np.ndarray], k: int = 10) -> dict[str, dict[str, float]]:
    """Mean nDCG@k and MRR of each method's order of every search's shown results (clicked searches)."""
    gains = graded(log).astype(np.float64)
    clicked = log["clicked"].to_numpy()
    per: dict[str, dict[str, list[float]]] = {m: {"ndcg": [], "mrr": []} for m in scores}
    for idx in log.groupby("search_id", sort=False).indices.values():
        if not clicked[idx].any():
            continue
        for method, s in scores.items():
            # ties keep the shown order reversed, so no method profits from the logging position
            order = idx[np.lexsort((-log["position"].to_numpy()[idx], -s[idx]))]
            per[method]["ndcg"].append(ndcg_at_k(gains[order], k))
            per[method]["mrr"].append(reciprocal_rank(clicked[order]))
    return {
        m: {
            f"ndcg@{k}": float(np.mean(v["ndcg"])) if v["ndcg"] else 0.0,
            "mrr": float(np.mean(v["mrr"])) if v["mrr"] else 0.0,
            "searches": len(v["ndcg"]),
        }
        for m, v in per.items()
    }


def true_relevance(log: pd.DataFrame, scores: dict[str, np.ndarray], k: int, seed: int) -> dict:
    """nDCG@k against the simulator's true attraction, every search; the debiased/not ratio and CI."""
    per = per_search_ndcg(log, scores, k, gains=log["true_attraction"].to_numpy())
    key = f"ndcg@{k}"
    means = {m: float(v.mean()) for m, v in per.items()}
    return {
        "searches": len(per["ranker"]),
        key: means,
        f"debiased_vs_no_debias_{key}": means["ranker"] / means["ranker_no_debias"],
        f"ranker_vs_bm25_{key}": means["ranker"] / means["bm25"],
        f"debiased_minus_no_debias_{key}": paired_bootstrap(
            per["ranker"], per["ranker_no_debias"], seed=seed
        ),
    }


def evaluate_search(
    data_dir: str | Path,
    *,
    holdout_weeks: int = 2,
    k: int = 10,
    seed: int = 0,
    save_ranker: str | Path | None = None,
    progress: Progress | None = None,
    ranker_params: dict | None = None,
) -> dict:
    """Train on the weeks before the split, evaluate on the held-out weeks; returns metrics and ratios."""
    import joblib

    report = progress or (lambda step, done, total: None)
    data_dir = Path(data_dir)
    report("search logs", 0, 5)
    path = data_dir / SEARCH_LOGS
    log = pd.read_parquet(path) if path.exists() else simulate_search_logs(data_dir, seed=seed)
    split = log["ts"].max() - pd.Timedelta(weeks=holdout_weeks)
    train = log[log["ts"] < split].reset_index(drop=True)
    test = log[log["ts"] >= split].reset_index(drop=True)
    if train.empty or test.empty:
        raise ValueError("the split leaves no training or no held-out searches; change --holdout-weeks")
    report("features", 1, 5)
    ctx = SearchContext.from_marketplace(data_dir, split.to_pydatetime())
    X_train = log_features(train, ctx)
    X_test = log_features(test, ctx)
    report("rankers", 2, 5)
    theta = position_propensities(train)
    params = ranker_params or {}
    debiased = fit_search_ranker(X_train, train, theta, random_state=seed, **params)
    naive = fit_search_ranker(X_train, train, None, random_state=seed, **params)
    report("evaluation", 3, 5)
    scores = {
        "bm25": X_test[:, BM25].astype(np.float64),
        "popularity": X_test[:, POPULARITY].astype(np.float64),
        "ranker": debiased.predict(X_test),
        "ranker_no_debias": naive.predict(X_test),
    }
    rand = test["randomized"].to_numpy()
    held_out = score_lists(test[rand].reset_index(drop=True), {m: s[rand] for m, s in scores.items()}, k)
    all_traffic = score_lists(test, scores, k)
    rand_log = test[rand].reset_index(drop=True)
    paired = per_search_ndcg(rand_log, {m: s[rand] for m, s in scores.items()}, k)
    key = f"ndcg@{k}"
    base = held_out["bm25"]
    result = {
        "split": split.isoformat(),
        "train_searches": int(train["search_id"].nunique()),
        "test_searches": int(test["search_id"].nunique()),
        "position_propensity": [round(float(t), 4) for t in theta],
        "randomized_slice": held_out,
        "all_held_out_traffic": all_traffic,
        "ratios": {
            f"ranker_vs_bm25_{key}": held_out["ranker"][key] / base[key] if base[key] else None,
            "ranker_vs_bm25_mrr": held_out["ranker"]["mrr"] / base["mrr"] if base["mrr"] else None,
            f"ranker_vs_popularity_{key}": held_out["ranker"][key] / held_out["popularity"][key]
            if held_out["popularity"][key]
            else None,
            f"debiased_vs_no_debias_{key}": held_out["ranker"][key] / held_out["ranker_no_debias"][key]
            if held_out["ranker_no_debias"][key]
            else None,
        },
        f"debiased_minus_no_debias_{key}": paired_bootstrap(
            paired["ranker"], paired["ranker_no_debias"], seed=seed
        ),
        f"ranker_minus_bm25_{key}": paired_bootstrap(paired["ranker"], paired["bm25"], seed=seed),
        "model_version": debiased.version_,
    }
    if "true_attraction" in rand_log.columns:
        result["true_relevance"] = true_relevance(rand_log, {m: s[rand] for m, s in scores.items()}, k, seed)
    if save_ranker is not None:
        joblib.dump(debiased, save_ranker)
        result["saved_ranker"] = str(Path(save_ranker).name)
    report("done", 5, 5)
    return result
