"""The one interface every recommender implements (after implicit's `RecommenderBase`).

Pipelines and serving call only these methods, so no caller ever special-cases a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from features.interactions import InteractionData

Ranked = list[tuple[str, float]]  # (item id, score), best first


class Recommender(ABC):
    """fit / recommend / similar_items / save / load.

    Conventions (scikit-learn): `__init__` stores parameters only; `fit` returns self; learned state ends
    in `_`; `random_state` makes fitting deterministic.
    """

    name: str = "recommender"

    @abstractmethod
    def fit(self, data: InteractionData) -> Self:
        """Learn from the interactions; returns self."""

    @abstractmethod
    def recommend(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        exclude_seen: bool = True,
        candidates: Collection[str] | None = None,
    ) -> list[Ranked]:
        """Top-n items per user, best first. Users unknown at fit time get an empty list (callers fall
        back to cold start). `candidates` restricts results to those item ids; `exclude_seen` drops items
        the user interacted with in the training data."""

    @abstractmethod
    def similar_items(self, item_id: str, n: int = 10) -> Ranked:
        """Items most like `item_id` (not including itself); empty for an unknown item."""

    def knows_user(self, user_id: str) -> bool:
        """Whether `user_id`, exactly as spelt, was a user at fit time (serving reads a look-alike shopper
        id as the shopper it names by it); False by default, for a model that cannot tell."""
        return False

    def scored_items(self) -> np.ndarray | None:
        """Item ids in the column order of `user_scores`, or None (the default) when the model does not
        score one user's whole row at once; serving then ranks through `recommend`."""
        return None

    def user_scores(self, user_id: str) -> np.ndarray | None:
        """One user's score for each of `scored_items()`, seen items included (serving's single-row
        path); None for an unknown user, and always None when `scored_items()` is."""
        return None

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the fitted model to one file or directory at `path`."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model written by `save`."""
