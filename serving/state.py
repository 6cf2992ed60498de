"""Everything the request path shares, held on `app.state.serving` (one per app, none global)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from crosscart.settings import Settings
from serving.ab import AliasModels, ExposureLog, LiveExperiment
from serving.catalog import CatalogSnapshot
from serving.middleware import Metrics
from serving.model_store import ModelStore
from serving.recommend import Policy
from serving.refresh import Refreshing
from serving.security import PrincipalCache, RateLimiter
from serving.sessions import SessionState


@dataclass
class ServingState:
    settings: Settings
    session_factory: sessionmaker[Session]
    catalog: Refreshing[CatalogSnapshot]
    experiments: Refreshing[list[LiveExperiment]]  # running experiments; refreshing syncs `aliases`
    models: ModelStore  # the champion
    aliases: AliasModels  # the other registry aliases running experiments serve
    exposures: ExposureLog
    uplift: ModelStore
    limiter: RateLimiter
    metrics: Metrics
    policy: Policy = field(default_factory=Policy)
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    sessions: SessionState = field(default_factory=SessionState)  # live visits' recent items
    session_models: ModelStore = field(default_factory=lambda: ModelStore(None, "session"))  # session model

    def load_once(self) -> None:
        """Load catalog, experiments and models without polling threads (tests, benches); exposures are
        still written in the background (tests call `exposures.flush()` to see them at once)."""
        for part in (self.catalog, self.experiments, self.models, self.uplift, self.session_models):
            part.refresh()
        self.exposures.start()

    def start(self) -> None:
        self.aliases.start()
        self.catalog.start()
        self.experiments.start()
        self.models.start()
        self.uplift.start()
        self.session_models.start()
        self.exposures.start()

    def stop(self) -> None:
        for part in (
            self.session_models, self.uplift, self.models, self.aliases, self.experiments, self.catalog,
            self.exposures,
        ):  # fmt: skip
            part.stop()
