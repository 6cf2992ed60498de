"""Recommendation pages shown to a generated marketplace's shoppers, reacting by their true tastes.

The click model is position-based: a shown product at slot r is examined with probability
1 / log2(r + 2) and, once examined, clicked with the shopper's attraction
1 - exp(-click_scale * n_products * p_view), where p_view is the truth's probability that the shopper's
next organic view is that product (`features.synth.truth.choice_probabilities`; n_products * p_view is
1 for a product of average appeal). A click becomes a purchase with the truth's purchase-to-view ratio
for that product, scaled to a mean of `buy_rate`. So no arm has a set rate: each model's click and
purchase rates follow from which products it ranks for whom. During a test a shopper sees
1 + Poisson((mean_pages - 1) x activity) pages, activity being the truth's per-shopper activity.
Recommenders (`models.recommenders`) are fitted on the marketplace's own events and rank every
shopper's top `depth` products.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class PageWorld:
    shopper_ids: np.ndarray
    attraction: np.ndarray  # (shoppers, products): click probability of an examined product
    buy: np.ndarray  # (shoppers, products): purchase probability given a click
    rankings: Mapping[str, np.ndarray]  # model -> (shoppers, depth) product indices, best first
    activity: np.ndarray  # (shoppers,): the truth's activity (mean 1), drives pages seen per test
    slots: int = 10
    mean_pages: float = 4.0

    def pages_seen(self, shopper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Pages each shopper sees during a test: 1 + Poisson((mean_pages - 1) x activity)."""
        return 1 + rng.poisson((self.mean_pages - 1) * self.activity[shopper])

    @property
    def examine(self) -> np.ndarray:
        return 1 / np.log2(np.arange(self.slots) + 2)

    @property
    def n_products(self) -> int:
        return self.attraction.shape[1]

    def click_probability(self, shopper: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(click) of each shown item (-1 = empty slot) of pages (rows) shown to `shopper` rows."""
        p = self.attraction[shopper[:, None], np.maximum(items, 0)] * self.examine[: items.shape[1]]
        return np.where(items >= 0, p, 0.0)

    def react(self, shopper: np.ndarray, items: np.ndarray, rng: np.random.Generator):
        """Draw clicks and purchases (0/1 arrays shaped like `items`) for the pages."""
        clicks = rng.random(items.shape) < self.click_probability(shopper, items)
        buy = self.buy[shopper[:, None], np.maximum(items, 0)]
        purchases = clicks & (rng.random(items.shape) < buy)
        return clicks.astype(np.int8), purchases.astype(np.int8)

    def true_rates(self, model: str) -> dict[str, float]:
        """Expected clicks and purchases per shown slot of `model`'s top pages, averaged over shoppers."""
        items = self.rankings[model][:, : self.slots]
        shopper = np.arange(len(self.shopper_ids))
        p_click = self.click_probability(shopper, items)
        p_buy = p_click * self.buy[shopper[:, None], items]
        return {"ctr": float(p_click.mean()), "purchase_rate": float(p_buy.mean())}


def build_world(
    marketplace: str | Path,
    models: Mapping[str, object],
    *,
    depth: int = 30,
    slots: int = 10,
    mean_pages: float = 4.0,
    click_scale: float = 0.05,
    buy_rate: float = 0.25,
) -> PageWorld:
    """Fit `models` (name -> unfitted Recommender, e.g. popularity and item kNN) on the marketplace's
    events and compute every shopper's attraction, purchase probability and top-`depth` rankings."""
    from features.interactions import build_interactions
    from features.synth.truth import choice_probabilities, load_truth, purchase_probabilities

    if depth < slots:
        raise ValueError("depth must be at least the number of slots")
    truth = load_truth(marketplace)
    shoppers = truth.shopper_ids
    view = choice_probabilities(truth, shoppers)
    bought = purchase_probabilities(truth, shoppers)
    n_products = view.shape[1]
    attraction = 1 - np.exp(-click_scale * n_products * view)
    ratio = np.divide(bought, view, out=np.zeros_like(view), where=view > 0)
    buy = np.clip(buy_rate * ratio / ratio[view > 0].mean(), 0, 1)

    events = pd.read_parquet(
        Path(marketplace) / "events", columns=["shopper_id", "product_id", "event_type", "ts"]
    )
    events = events[
        events["product_id"].notna() & events["event_type"].isin(["view", "favorite", "cart", "purchase"])
    ]
    data = build_interactions(events, user_col="shopper_id", item_col="product_id")
    index = pd.Index(truth.product_ids)
    popular = index.get_indexer(
        events.groupby("product_id").size().sort_values(ascending=False).index[:depth]
    )
    rankings = {}
    for name, model in models.items():
        model.fit(data)
        lists = model.recommend(list(shoppers), n=depth, exclude_seen=False)
        out = np.empty((len(shoppers), depth), dtype=np.int64)
        for row, ranked in enumerate(lists):
            picked = index.get_indexer([item for item, _ in ranked])
            fill = [p for p in popular if p not in set(picked)]  # unknown shoppers: popularity
            out[row] = np.concatenate([picked, fill])[:depth]
        rankings[name] = out
    activity = truth.tastes.activity
    return PageWorld(shoppers, attraction, buy, rankings, activity, slots, mean_pages)
