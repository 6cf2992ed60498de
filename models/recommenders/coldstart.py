"""Serving wrapper that never returns an empty list for a shopper or product the main model lacks.

- shoppers the main model knows: the main model;
- shoppers with no interactions but a profile in `user_features` at fit time: popularity within their
  `fallback_by` group (e.g. region), shrunk toward global popularity;
- shoppers never seen at all: global popularity.
- `similar_items` for a product the main model does not know (new listing): content neighbours from its
  attributes, when `item_features` exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence

from features.interactions import InteractionData
from models.recommenders.base import Ranked
from models.recommenders.common import PersistentRecommender, check_data, check_n
from models.recommenders.content import ContentRecommender
from models.recommenders.popularity import PopularityRecommender


class ColdStartRecommender(PersistentRecommender):
    """`model` (a registered name) for known shoppers, group popularity and content for the rest."""

    name = "coldstart"

    def __init__(self, model: str = "ranker", model_params: dict | None = None, fallback_by: str = "region"):
        self.model = model
        self.model_params = model_params
        self.fallback_by = fallback_by

    def fit(self, data: InteractionData) -> ColdStartRecommender:
        from models.recommenders import make_recommender

        if self.model == "coldstart":
            raise ValueError("coldstart cannot wrap itself")
        check_data(data)
        self.user_index_ = dict(data.user_index)
        self.model_ = make_recommender(self.model, **(self.model_params or {})).fit(data)
        ufeat = data.user_features
        has_group = ufeat is not None and self.fallback_by in ufeat.columns
        self.fallback_ = PopularityRecommender(by=self.fallback_by if has_group else None).fit(data)
        self.user_group_ = ufeat[self.fallback_by].dropna().astype(str).to_dict() if has_group else {}
        self.content_ = None
        if data.item_features is not None:
            # without usable attribute columns new products simply stay without neighbours
            with contextlib.suppress(ValueError):
                self.content_ = ContentRecommender().fit(data)
        return self

    def recommend(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        exclude_seen: bool = True,
        candidates: Collection[str] | None = None,
    ) -> list[Ranked]:
        self._check_fitted()
        n = check_n(n)
        out = self.model_.recommend(user_ids, n=n, exclude_seen=exclude_seen, candidates=candidates)
        for pos, user in enumerate(user_ids):
            if user not in self.user_index_:
                out[pos] = self.fallback_.popular_items(
                    n, group=self.user_group_.get(user), candidates=candidates
                )
        return out

    def similar_items(self, item_id: str, n: int = 10) -> Ranked:
        self._check_fitted()
        found = self.model_.similar_items(item_id, n)
        if not found and self.content_ is not None:
            found = self.content_.similar_items(item_id, n)
        return found
