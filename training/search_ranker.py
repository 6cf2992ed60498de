"""Train the search ranker on search logs, with or without position-bias correction.

Position bias: a result at position k is only seen with probability theta_k, so raw clicks reward whatever
the logging policy put on top. theta_k is estimated from the randomized slice of traffic (positions
assigned at random, so CTR at k over CTR at 1 is theta_k / theta_1), and each logged outcome is weighted
by theta_1 / theta_k (inverse propensity weighting, clipped at MAX_INVERSE_PROPENSITY) in the
propensity-weighted LambdaRank objective (models.search.ranker.IPWLambdaRank).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.search_features import FEATURES, ShopperProfile, search_features
from features.synth.search_logs import QueryEngine, product_documents
from models.search.ranker import SearchRanker

POPULARITY_WEIGHTS = {"view": 1.0, "favorite": 2.0, "cart": 3.0, "purchase": 5.0}
GRADES = {"purchased": 3, "carted": 2, "clicked": 1}
MAX_INVERSE_PROPENSITY = 10.0


def graded(log: pd.DataFrame) -> np.ndarray:
    """3 purchase, 2 cart, 1 click, 0 shown only."""
    return np.select(
        [log["purchased"].to_numpy(), log["carted"].to_numpy(), log["clicked"].to_numpy()], [3, 2, 1], 0
    )


def position_propensities(log: pd.DataFrame, page: int = 10) -> np.ndarray:
    """theta_k / theta_1 for k = 1..page from the randomized slice: CTR by position made non-increasing
    by isotonic regression weighted by impressions (a running minimum would carry one noisy low
    position down to all later ones), over the fitted CTR at 1, clipped to [1 / MAX_INVERSE_PROPENSITY, 1]."""
    from sklearn.isotonic import IsotonicRegression

    rand = log[log["randomized"]]
    if rand.empty:
        raise ValueError("the log has no randomized slice to estimate position bias from")
    by_position = rand.groupby("position")["clicked"].agg(["mean", "size"]).reindex(range(1, page + 1))
    seen = by_position["size"].notna().to_numpy()
    positions = np.arange(1, page + 1)
    iso = IsotonicRegression(increasing=False, out_of_bounds="clip")
    ctr, shown = by_position["mean"].to_numpy(), by_position["size"].to_numpy()
    iso.fit(positions[seen], ctr[seen], sample_weight=shown[seen])
    ctr = iso.predict(positions)
    theta = ctr / max(ctr[0], 1e-9)
    return np.clip(theta, 1.0 / MAX_INVERSE_PROPENSITY, 1.0)


def ipw_weights(log: pd.DataFrame, theta: np.ndarray | None) -> np.ndarray:
    """Per-row weight theta_1 / theta_k of the logged position k (all 1 without debiasing)."""
    if theta is None:
        return np.ones(len(log))
    return 1.0 / theta[log["position"].to_numpy() - 1]


@dataclass
class SearchContext:
    """What features need besides the query: popularity and shopper profiles, as of `as_of`."""

    engine: QueryEngine
    popularity: dict[str, float]
    profiles: dict[str, ShopperProfile]
    as_of: datetime

    @classmethod
    def from_marketplace(cls, data_dir: str | Path, as_of: datetime, pool: int = 50) -> SearchContext:
        """Popularity (distinct shoppers per behaviour, weighted) over the 30 days before `as_of`,
        shopper profiles from purchases before it."""
        data_dir = Path(data_dir)
        docs = product_documents(data_dir)
        by_id = {d.product_id: d for d in docs}
        events = pq.read_table(
            data_dir / "events", columns=["ts", "shopper_id", "product_id", "event_type"]
        ).to_pandas()
        before = events[(events["ts"] < pd.Timestamp(as_of)) & events["product_id"].notna()]
        recent = before[before["ts"] >= pd.Timestamp(as_of) - pd.Timedelta(days=30)]
        # Distinct shoppers per behaviour, as serving counts them: repeats by one shopper add nothing.
        once = recent.drop_duplicates(["product_id", "event_type", "shopper_id"])
        weight = once["event_type"].map(POPULARITY_WEIGHTS).fillna(0.0)
        popularity = weight.groupby(once["product_id"]).sum().to_dict()
        bought = before[before["event_type"] == "purchase"]
        profiles = {}
        for shopper, items in bought.groupby("shopper_id")["product_id"]:
            rows = [
                (by_id[p].category_id, by_id[p].origin, float(by_id[p].price), by_id[p].brand)
                for p in items
                if p in by_id
            ]
            profiles[shopper] = ShopperProfile.from_purchases(rows)
        return cls(QueryEngine(docs, pool), popularity, profiles, as_of)


def log_features(log: pd.DataFrame, ctx: SearchContext) -> np.ndarray:
    """Feature rows aligned with `log` (features computed over each query's whole match list, as the
    API computes them over its candidates)."""
    X = np.zeros((len(log), len(FEATURES)), dtype=np.float32)
    cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for (_, query, shopper), idx in _searches(log):
        key = (query, shopper)
        if key not in cache:
            parsed, hits = ctx.engine.run(query)
            feats = search_features(
                hits,
                parsed,
                popularity=[ctx.popularity.get(h.product_id, 0.0) for h in hits],
                shopper=ctx.profiles.get(shopper, ShopperProfile()),
                now=ctx.as_of,
            )
            if len(cache) > 50_000:
                cache.clear()
            cache[key] = {h.product_id: feats[i] for i, h in enumerate(hits)}
        rows = cache[key]
        for i in idx:
            X[i] = rows[log["product_id"].iat[i]]
    return X


def _searches(log: pd.DataFrame) -> Iterator[tuple[tuple, np.ndarray]]:
    groups = log.groupby(["search_id", "query", "shopper_id"], sort=False).indices
    yield from groups.items()


def group_sizes(log: pd.DataFrame) -> np.ndarray:
    """Rows per search, in order (the log is grouped by search_id already)."""
    ids = log["search_id"].to_numpy()
    if np.any(np.diff(ids) < 0):
        raise ValueError("the log must be sorted by search_id")
    _, counts = np.unique(ids, return_counts=True)
    return counts


def fit_search_ranker(
    X: np.ndarray, log: pd.DataFrame, theta: np.ndarray | None, *, random_state: int = 0, **params
) -> SearchRanker:
    """Fit on searches with at least one outcome (a list without any gives lambdarank nothing)."""
    labels = graded(log).astype(np.int64)
    weights = ipw_weights(log, theta)
    keep = pd.Series(labels > 0).groupby(log["search_id"].to_numpy()).transform("any").to_numpy()
    sub = log[keep]
    ranker = SearchRanker(random_state=random_state, **params)
    return ranker.fit(X[keep], labels[keep], group_sizes(sub), weights[keep])
