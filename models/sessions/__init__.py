"""Session-based recommenders sharing one interface: `models.sessions.base.SessionRecommender`.

`make_session_model(name, **params)` builds one by name with session-rec's published defaults;
`load_session_model(path)` reads any saved one.
"""

from __future__ import annotations

from pathlib import Path

from models.sessions.auto import AutoTuned
from models.sessions.base import Ranked, SessionData, SessionRecommender, read_artifact
from models.sessions.hybrid import WeightedHybrid
from models.sessions.knn import STAN, VSKNN, VSTAN
from models.sessions.popularity import GlobalPopularity, SessionPopularity
from models.sessions.rules import SequentialRules

SESSION_MODELS: dict[str, type[SessionRecommender]] = {
    "pop": GlobalPopularity,
    "spop": SessionPopularity,
    "sr": SequentialRules,
    "vsknn": VSKNN,
    "stan": STAN,
    "vstan": VSTAN,
    "hybrid": WeightedHybrid,
    "auto": AutoTuned,
}


def make_session_model(name: str, **params) -> SessionRecommender:
    """A fresh, unfitted model; unknown names and parameters raise with the valid choices."""
    try:
        cls = SESSION_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown session model {name!r}; choose from {sorted(SESSION_MODELS)}") from None
    return cls(**params)


def load_session_model(path: str | Path) -> SessionRecommender:
    """Load any model written by `save` (pickle underneath: trusted artifacts only)."""
    artifact = read_artifact(path)
    by_class = {cls.__name__: cls for cls in SESSION_MODELS.values()}
    cls = by_class.get(artifact["class"])
    if cls is None:
        raise ValueError(f"{path}: unknown session model class {artifact['class']!r}")
    return cls._from_artifact(artifact)


__all__ = [
    "SESSION_MODELS",
    "Ranked",
    "SessionData",
    "SessionRecommender",
    "load_session_model",
    "make_session_model",
]
