"""Recommenders sharing one interface: `models.recommenders.base.Recommender`.

`make_recommender(name, **params)` builds one by name with tuned defaults; `load_recommender(path)`
reads any saved model (the artifact names its class).
"""

from __future__ import annotations

from pathlib import Path

from models.artifacts import load_model, make_model
from models.recommenders.base import Ranked, Recommender
from models.recommenders.coldstart import ColdStartRecommender
from models.recommenders.common import ARTIFACT_FORMAT
from models.recommenders.content import ContentRecommender
from models.recommenders.ease import EASERecommender
from models.recommenders.factorization import ALSRecommender, BPRRecommender
from models.recommenders.itemknn import ItemKNNRecommender
from models.recommenders.popularity import PopularityRecommender, TrendingRecommender
from models.recommenders.ranker import TwoStageRanker
from models.recommenders.repeat import GPTopFreqRecommender, PersonalTopFreqRecommender, TIFUKNNRecommender

REGISTRY: dict[str, type[Recommender]] = {
    "popularity": PopularityRecommender,
    "trending": TrendingRecommender,
    "itemknn": ItemKNNRecommender,
    "als": ALSRecommender,
    "bpr": BPRRecommender,
    "ease": EASERecommender,
    "ranker": TwoStageRanker,
    "content": ContentRecommender,
    "coldstart": ColdStartRecommender,
    "personal-topfreq": PersonalTopFreqRecommender,
    "gp-topfreq": GPTopFreqRecommender,
    "tifuknn": TIFUKNNRecommender,
}


def make_recommender(name: str, **params) -> Recommender:
    """A fresh, unfitted model; unknown names and parameters raise with the valid choices."""
    return make_model(REGISTRY, "recommender", name, params)


def load_recommender(path: str | Path) -> Recommender:
    """Load any model written by `save` (pickle underneath: trusted artifacts only)."""
    return load_model(REGISTRY, "recommender", path, ARTIFACT_FORMAT)


__all__ = ["REGISTRY", "Ranked", "Recommender", "load_recommender", "make_recommender"]
