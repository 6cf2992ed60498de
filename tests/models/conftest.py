"""Small generated marketplaces for the recommender tests (no MovieLens, no files)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.interactions import InteractionData


def make_data(
    pairs: list[tuple[str, str]] | pd.DataFrame,
    times: np.ndarray | None = None,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
) -> InteractionData:
    """InteractionData from (user, item) pairs with weight 1 and optional event times (days)."""
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"]).drop_duplicates()
    users = np.array(sorted(frame["user_id"].unique()), dtype=object)
    items = np.array(sorted(frame["item_id"].unique()), dtype=object)
    rows = pd.Index(users).get_indexer(frame["user_id"])
    cols = pd.Index(items).get_indexer(frame["item_id"])
    matrix = sp.csr_matrix((np.ones(len(frame), np.float32), (rows, cols)), shape=(len(users), len(items)))
    events = None
    if times is not None:
        ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.asarray(times)[frame.index], unit="D")
        events = frame.assign(ts=ts, weight=1.0).reset_index(drop=True)
    return InteractionData(
        matrix=matrix,
        user_ids=users,
        item_ids=items,
        events=events,
        item_features=item_features,
        user_features=user_features,
    )


def block_market(n_users: int = 60, n_items: int = 40, n_groups: int = 4, seed: int = 0) -> InteractionData:
    """Shoppers in `n_groups` regions, each buying mostly from its own category, with times and features.

    Group g shops in days [30 g, 30 g + 20]; items of category g sell in that period.
    """
    rng = np.random.default_rng(seed)
    pairs, times = [], []
    for u in range(n_users):
        g = u % n_groups
        own = [i for i in range(n_items) if i % n_groups == g]
        picks = set(rng.choice(own, size=min(len(own), 6), replace=False).tolist())
        picks |= set(rng.choice(n_items, size=2, replace=False).tolist())
        for i in sorted(picks):
            pairs.append((f"u{u:03d}", f"p{i:03d}"))
            times.append(30.0 * g + rng.uniform(0, 20))
    items = [f"p{i:03d}" for i in range(n_items + 3)]  # three listed products nobody bought yet
    item_features = pd.DataFrame(
        {
            "category_id": [f"c{i % n_groups}" for i in range(n_items + 3)],
            "brand": [f"b{i % (2 * n_groups)}" for i in range(n_items + 3)],
            "origin_country": ["JP" if i % 2 else "KR" for i in range(n_items + 3)],
            "merchant_id": [f"m{i % 5}" for i in range(n_items + 3)],
            "price": [Decimal(f"{50 + 3 * i}.90") for i in range(n_items + 3)],
            "fulfillment": ["bonded" if i % 3 else "direct_mail" for i in range(n_items + 3)],
            "self_operated": [i % 4 == 0 for i in range(n_items + 3)],
            "created_at": pd.Timestamp("2025-12-01", tz="UTC")
            + pd.to_timedelta(np.arange(n_items + 3), unit="D"),
        },
        index=pd.Index(items, name="item_id"),
    )
    shoppers = [f"u{u:03d}" for u in range(n_users + 2)]  # two registered shoppers without events
    user_features = pd.DataFrame(
        {"region": [f"r{u % n_groups}" for u in range(n_users + 2)], "segment": ["new"] * (n_users + 2)},
        index=pd.Index(shoppers, name="user_id"),
    )
    return make_data(pairs, np.array(times), item_features, user_features)


@pytest.fixture(scope="session")
def market() -> InteractionData:
    return block_market()
