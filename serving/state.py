"""Everything the request path shares, held on `app.state.serving` (one per app, none global)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crosscart.settings import Settings
from serving.catalog import CatalogSnapshot
from serving.middleware import Metrics
from serving.model_store import ModelStore
from serving.recommend import Policy
from serving.refresh import Refreshing
from serving.security import PrincipalCache, RateLimiter


@dataclass
class ServingState:
    settings: Settings
    session_factory: sessionmaker[Session]
    catalog: Refreshing[CatalogSnapshot]
    experiments: Refreshing[list[Any]]  # running ExperimentSpec objects
    models: ModelStore
    uplift: ModelStore
    limiter: RateLimiter
    metrics: Metrics
    policy: Policy = field(default_factory=Policy)
    principals: PrincipalCache = field(default_factory=PrincipalCache)

    def load_once(self) -> None:
        """Load catalog, experiments and models without background threads (tests, benches)."""
        for part in (self.catalog, self.experiments, self.models, self.uplift):
            part.refresh()

    def start(self) -> None:
        self.catalog.start()
        self.experiments.start()
        self.models.start()
        self.uplift.start()

    def stop(self) -> None:
        for part in (self.uplift, self.models, self.experiments, self.catalog):
            part.stop()
