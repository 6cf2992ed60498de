"""Offline evaluation of any `Recommender`: load a dataset, split it, fit, recommend, score.

Protocol (Microsoft Recommenders' benchmark): the model is fitted on the train split; every test user
gets a top-k list with seen (train) items excluded; every test interaction of the user is relevant.
Choices for real marketplace data:
- Cold users (in test, not in train) are still asked for recommendations: they are scored with whatever
  the model returns; the `Recommender` contract returns nothing for unknown users, and a user with an
  empty list is not scored (Recommenders' inner join). `n_cold_users` says how many there were.
- Test items the user already had in train (repeat purchases) are not relevant: seen items are
  excluded from the lists, so they could never be hit. With `include_seen` (for repeat-heavy retail:
  groceries, cosmetics, formula) they are relevant and the lists keep seen items; the metrics are then
  also reported on the repeat part and the explore part of each user's test items
  (`repeat_ndcg@10`, `explore_recall@10`, ...; see `experiments.repeat_metrics`). Test rows with a
  negative value (returns) are not relevant either. Test items never seen in training stay relevant
  (they count against recall).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from experiments import metrics
from experiments.repeat_metrics import split_ranking_metrics
from experiments.splits import split_events
from features.interactions import InteractionData, build_interactions
from features.loaders import LoadReport, load_events, load_movielens, load_movielens_items, load_synthetic
from models.recommenders.base import Recommender

DATA_KINDS = ("movielens", "events", "synthetic")


@dataclass(frozen=True)
class Dataset:
    """Cleaned events (loader columns) with what the loader dropped, and optional side tables."""

    events: pd.DataFrame
    report: LoadReport
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None


@dataclass(frozen=True)
class EvaluationSetup:
    """A split ready to score models on: the train interactions and each test user's relevant items."""

    train: InteractionData
    relevant: dict[str, set[str]]
    n_cold_users: int
    n_test_pairs_seen: int
    include_seen: bool = False
    history: dict[str, set[str]] | None = None  # with include_seen: each test user's train items


def load_dataset(
    spec: str,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    event_col: str | None = None,
    value_col: str | None = None,
    time_format: str | None = None,
) -> Dataset:
    """Read `movielens:PATH/u.data` (plus `u.item` beside it as item features when present),
    `events:FILE` (CSV/Parquet; needs `user_col` and `item_col`) or `synthetic:DIR`."""
    kind, sep, location = spec.partition(":")
    if not sep or kind not in DATA_KINDS or not location:
        raise ValueError(f"bad data spec {spec!r}; expected movielens:PATH, events:FILE or synthetic:DIR")
    path = Path(location)
    if kind == "movielens":
        events, report = load_movielens(path)
        items_file = path.with_name("u.item")
        return Dataset(events, report, load_movielens_items(items_file) if items_file.is_file() else None)
    if kind == "events":
        if not user_col or not item_col:
            raise ValueError("events:FILE needs the user and item column names (--user-col, --item-col)")
        events, report = load_events(
            path, user_col=user_col, item_col=item_col, time_col=time_col, event_col=event_col,
            value_col=value_col, time_format=time_format,
        )  # fmt: skip
        return Dataset(events, report)
    events, report, products, shoppers = load_synthetic(path)
    return Dataset(events, report, item_features=products, user_features=shoppers)


def prepare(
    dataset: Dataset,
    split: str,
    *,
    event_weights: Mapping[str, float] | None = None,
    half_life_days: float | None = None,
    include_seen: bool = False,
) -> EvaluationSetup:
    """Split the events and build the train interactions and the test relevance sets (with
    `include_seen`, repeats of train items stay relevant)."""
    if dataset.events.empty:
        raise ValueError(f"no usable events in {dataset.report.source}")
    train_events, test_events = split_events(dataset.events, split)
    if train_events.empty or test_events.empty:
        raise ValueError(f"split {split!r} leaves an empty train or test set; use another split")
    train = build_interactions(
        train_events,
        event_weights=event_weights,
        half_life_days=half_life_days,
        item_features=dataset.item_features,
        user_features=dataset.user_features,
    )
    if "value" in test_events.columns:
        test_events = test_events[test_events["value"] >= 0]
    test_pairs = test_events[["user_id", "item_id"]].drop_duplicates()
    nonzero = train.matrix.tocoo()  # what the model treats as seen: pairs with positive weight
    seen = pd.DataFrame({"user_id": train.user_ids[nonzero.row], "item_id": train.item_ids[nonzero.col]})
    marked = test_pairs.merge(seen, on=["user_id", "item_id"], how="left", indicator=True)
    fresh = marked[marked["_merge"] == "left_only"]
    kept = test_pairs if include_seen else fresh
    relevant = {user: set(items) for user, items in kept.groupby("user_id", sort=True)["item_id"]}
    if not relevant:  # metrics over no user would print as zeros, not as "nothing to score"
        raise ValueError(
            f"split {split!r} leaves no test user with an item to find: every test pair is a return or was"
            " seen in train" + ("" if include_seen else " (--include-seen keeps repeat purchases)")
        )
    n_cold = sum(1 for user in relevant if user not in train.user_index)
    history = None
    if include_seen:
        seen = seen[seen["user_id"].isin(relevant)]
        history = {user: set(items) for user, items in seen.groupby("user_id", sort=True)["item_id"]}
    return EvaluationSetup(
        train=train,
        relevant=relevant,
        n_cold_users=n_cold,
        n_test_pairs_seen=len(test_pairs) - len(fresh),
        include_seen=include_seen,
        history=history,
    )


def evaluate_model(model: Recommender, setup: EvaluationSetup, k: int = 10, name: str | None = None) -> dict:
    """Fit `model` on the train split, recommend k items to every test user, return one result row."""
    train = setup.train
    started = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - started

    users = list(setup.relevant)
    started = time.perf_counter()
    ranked = model.recommend(users, n=k, exclude_seen=not setup.include_seen)
    predict_seconds = time.perf_counter() - started
    if len(ranked) != len(users):
        raise ValueError(
            f"{type(model).__name__}.recommend returned {len(ranked)} lists for {len(users)} users"
        )
    recommended = {user: [item for item, _score in items] for user, items in zip(users, ranked, strict=True)}
    scored = {user: items for user, items in recommended.items() if items}

    # the catalog: items seen in training plus any item the side table describes
    catalog = set(train.item_index)
    if train.item_features is not None:
        catalog.update(train.item_features.index)
    item_counts = dict(
        zip(train.item_ids.tolist(), np.diff(train.matrix.tocsc().indptr).tolist(), strict=True)
    )
    vectors, index, basis = _diversity_vectors(train, scored)
    row = {"model": name or getattr(model, "name", type(model).__name__), "k": k}
    row.update(metrics.ranking_metrics(scored, setup.relevant, k))
    if setup.include_seen:
        row.update(split_ranking_metrics(scored, setup.relevant, setup.history or {}, k))
    row.update(
        coverage=metrics.catalog_coverage(scored, len(catalog), k),
        novelty=metrics.novelty(scored, item_counts, train.n_users, k),
        diversity=metrics.intra_list_diversity(scored, vectors, index, k),
        diversity_basis=basis,
        popularity_percentile=metrics.popularity_percentile(scored, item_counts, k),
        arp=metrics.average_recommendation_popularity(scored, item_counts, k),
        n_test_users=len(users),
        n_cold_users=setup.n_cold_users,
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
    )
    return row


def _diversity_vectors(train: InteractionData, recommended: dict[str, list[str]]):
    """(vectors, index, basis) for intra-list diversity: the items' descriptive features when the data
    has any (genres, category, brand...), else co-occurrence among training users. An item with no
    vector (not described, or never seen in training) gets an all-zero row: unlike everything."""
    features = None if train.item_features is None else metrics.item_feature_vectors(train.item_features)
    if features is not None and features[0].shape[1] > 0:
        (vectors, index), basis = features, "item features"
    else:
        vectors, index, basis = (
            metrics.cooccurrence_vectors(train.matrix),
            dict(train.item_index),
            "co-occurrence",
        )
    missing = sorted({item for items in recommended.values() for item in items} - set(index))
    n_rows = vectors.shape[0]
    index.update({item: n_rows + i for i, item in enumerate(missing)})
    vectors = sp.vstack([vectors, sp.csr_matrix((len(missing), vectors.shape[1]))], format="csr")
    return vectors, index, basis


def make_model(name: str, params: Mapping[str, object] | None = None) -> Recommender:
    """Build a model by registry name through `models.recommenders.make_recommender`."""
    from models.recommenders import make_recommender  # looked up per call: tests swap the registry

    try:
        return make_recommender(name, **dict(params or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot make model {name!r}: {exc}") from exc


def evaluate_models(
    names: Iterable[str],
    setup: EvaluationSetup,
    k: int = 10,
    params: Mapping[str, Mapping[str, object]] | None = None,
) -> Iterator[dict]:
    """One result row per model name, yielded as each finishes; every name is checked before any fit."""
    models = [(name, make_model(name, (params or {}).get(name))) for name in names]
    for name, model in models:
        yield evaluate_model(model, setup, k, name=name)
