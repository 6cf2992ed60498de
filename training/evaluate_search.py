"""Offline evaluation of search ranking on held-out weeks of the marketplace's search logs.

Rankers are trained on the weeks before the split and compared on the held-out weeks' randomized slice
(positions drawn at random, so logged outcomes do not favour any ranker's order): each method re-orders
every shown list; nDCG@k with graded gains (purchase 3, cart 2, click 1) and MRR of the first clicked
result, over searches with at least one click. Methods: BM25 alone, popularity within the matches, the
learned ranker with position-bias correction (IPW) and the same ranker trained without it.

Clicks on the randomized slice are still examination-biased within each list, so when the log carries
the simulator's `true_attraction` (generated marketplaces do) rankers are also graded against that truth:
nDCG@k with gain = true click probability once examined, over every randomized search and over all
held-out traffic (the truth does not depend on where a result was shown). Differences between methods
carry 95% intervals from a bootstrap over queries: searches for one query see the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from commerce.files import atomic_path
from commerce.inputs import traced_to_inputs
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


def _lists(log: pd.DataFrame, clicked_only: bool) -> list[np.ndarray]:
    """Row indices of each search (with at least one click when `clicked_only`), in log order."""
    clicked = log["clicked"].to_numpy()
    groups = log.groupby("search_id", sort=False).indices.values()
    return [idx for idx in groups if not clicked_only or clicked[idx].any()]


def per_search_ndcg(
    log: pd.DataFrame, scores: dict[str, np.ndarray], k: int = 10, gains: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """nDCG@k of each method on each search (aligned across methods, for paired comparisons): graded
    outcomes over clicked searches, or the given `gains` (e.g. true attraction) over every search."""
    clicked_only = gains is None
    gains = graded(log).astype(np.float64) if gains is None else np.asarray(gains, dtype=np.float64)
    position = log["position"].to_numpy()
    out: dict[str, list[float]] = {m: [] for m in scores}
    for idx in _lists(log, clicked_only):
        for method, s in scores.items():
            # ties keep the shown order reversed, so no method profits from the logging position
            out[method].append(ndcg_at_k(gains[idx[np.lexsort((-position[idx], -s[idx]))]], k))
    return {m: np.asarray(v) for m, v in out.items()}


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0, clusters: np.ndarray | None = None
) -> dict[str, float]:
    """Mean of a - b over the same searches with a 95% percentile-bootstrap interval. With `clusters`
    (e.g. the query of each search) whole clusters are resampled: searches of one query see the same
    results, so they are not independent draws and a per-search bootstrap would be too narrow."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    _, cluster = np.unique(np.arange(len(diff)) if clusters is None else clusters, return_inverse=True)
    sums, counts = np.bincount(cluster, diff), np.bincount(cluster)
    draw = np.random.default_rng(seed).integers(0, len(sums), (n, len(sums)))
    means = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95_low": float(lo), "ci95_high": float(hi)}


def score_lists(log: pd.DataFrame, scores: dict[str, np.ndarray], k: int = 10) -> dict[str, dict[str, float]]:
    """Mean nDCG@k and MRR of each method's order of every search's shown results (clicked searches)."""
    ndcg = per_search_ndcg(log, scores, k)
    clicked, position = log["clicked"].to_numpy(), log["position"].to_numpy()
    lists = _lists(log, clicked_only=True)
    out = {}
    for method, s in scores.items():
        mrr = [reciprocal_rank(clicked[idx[np.lexsort((-position[idx], -s[idx]))]]) for idx in lists]
        out[method] = {
            f"ndcg@{k}": float(ndcg[method].mean()) if lists else 0.0,
            "mrr": float(np.mean(mrr)) if lists else 0.0,
            "searches": len(lists),
        }
    return out


def compare(log: pd.DataFrame, scores: dict[str, np.ndarray], k: int, seed: int, gains=None) -> dict:
    """nDCG@k of each method (graded outcomes over clicked searches, or `gains` over every search), the
    debiased / not and ranker / BM25 ratios, and the paired differences with 95% intervals from a
    bootstrap over queries."""
    per = per_search_ndcg(log, scores, k, gains=gains)
    query = log["query"].to_numpy()
    queries = np.array([query[idx[0]] for idx in _lists(log, clicked_only=gains is None)], dtype=object)
    key = f"ndcg@{k}"
    means = {m: float(v.mean()) for m, v in per.items()}
    return {
        "searches": len(queries),
        "queries": len(set(queries)),
        key: means,
        f"debiased_vs_no_debias_{key}": means["ranker"] / means["ranker_no_debias"],
        f"ranker_vs_bm25_{key}": means["ranker"] / means["bm25"],
        f"debiased_minus_no_debias_{key}": paired_bootstrap(
            per["ranker"], per["ranker_no_debias"], seed=seed, clusters=queries
        ),
        f"ranker_minus_bm25_{key}": paired_bootstrap(per["ranker"], per["bm25"], seed=seed, clusters=queries),
    }


def true_examination(log: pd.DataFrame, page: int = 10) -> list[float] | None:
    """The simulator's examination probability by position over that of position 1, when the log
    carries it (generated marketplaces do): what `position_propensities` should recover."""
    if "true_examination" not in log.columns:
        return None
    by_position = log.groupby("position")["true_examination"].mean().reindex(range(1, page + 1))
    return [round(float(t), 4) for t in by_position / by_position.iat[0]]


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
    if path.exists():
        with traced_to_inputs(path):  # a damaged page: one line naming the file, not pyarrow's traceback
            log = pd.read_parquet(path)
    else:
        log = simulate_search_logs(data_dir, seed=seed)
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
    rand_log = test[rand].reset_index(drop=True)
    rand_scores = {m: s[rand] for m, s in scores.items()}
    held_out = score_lists(rand_log, rand_scores, k)
    clicks = compare(rand_log, rand_scores, k, seed)
    key = f"ndcg@{k}"
    base = held_out["bm25"]
    result = {
        "split": split.isoformat(),
        "train_searches": int(train["search_id"].nunique()),
        "test_searches": int(test["search_id"].nunique()),
        "position_propensity": [round(float(t), 4) for t in theta],
        "true_examination": true_examination(train[train["randomized"]]),
        "randomized_slice": held_out,
        "all_held_out_traffic": score_lists(test, scores, k),
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
        f"debiased_minus_no_debias_{key}": clicks[f"debiased_minus_no_debias_{key}"],
        f"ranker_minus_bm25_{key}": clicks[f"ranker_minus_bm25_{key}"],
        "clicked_queries": clicks["queries"],
        "model_version": debiased.version_,
    }
    if "true_attraction" in test.columns:
        result["true_relevance"] = compare(rand_log, rand_scores, k, seed, gains=rand_log["true_attraction"])
        result["true_relevance_all_traffic"] = compare(test, scores, k, seed, gains=test["true_attraction"])
    if save_ranker is not None:
        with atomic_path(save_ranker) as tmp:  # a full disk leaves the previous ranker, not half of this one
            joblib.dump(debiased, tmp)
        result["saved_ranker"] = str(Path(save_ranker).name)
    report("done", 5, 5)
    return result
