"""Session-based recommenders sharing one interface: `models.sessions.base.SessionRecommender`.

`make_session_model(name, **params)` builds one by name with session-rec's published defaults;
`load_session_model(path)` reads any saved one.
"""

from __future__ import annotations

from pathlib import Path

from models.artifacts import load_model, make_model
from models.sessions.auto import AutoTuned
from models.sessions.base import ARTIFACT_FORMAT, Ranked, SessionData, SessionRecommender
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
    return make_model(SESSION_MODELS, "session model", name, params)


def load_session_model(path: str | Path) -> SessionRecommender:
    """Load any model written by `save` (pickle underneath: trusted artifacts only)."""
    return load_model(SESSION_MODELS, "session model", path, ARTIFACT_FORMAT)


__all__ = [
    "SESSION_MODELS",
    "Ranked",
    "SessionData",
    "SessionRecommender",
    "load_session_model",
    "make_session_model",
]
