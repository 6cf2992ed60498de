"""Everything the request path shares, held on `app.state.serving` (one per app, none global)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from crosscart.settings import Settings
from serving.ab import AliasModels, ExposureLog, LiveExperiment
from serving.catalog import CatalogSnapshot
from serving.key_lookups import KeyLookups
from serving.middleware import Metrics
from serving.model_store import ModelStore
from serving.recommend import Policy
from serving.refresh import Refreshing
from serving.resilience import DatabaseGate, DatabaseHealth
from serving.security import FailedAuthThrottle, PrincipalCache, RateLimiter


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
    db_gate: DatabaseGate
    policy: Policy = field(default_factory=Policy)
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    auth_failures: FailedAuthThrottle = field(default_factory=lambda: FailedAuthThrottle(30))
    db_health: DatabaseHealth = field(default_factory=DatabaseHealth)
    key_lookups: KeyLookups | None = None  # set by create_app (it needs the state itself)

    def load_once(self) -> None:
        """Load catalog, experiments and models without polling threads (tests, benches); exposures are
        still written in the background (tests call `exposures.flush()` to see them at once)."""
        for part in (self.catalog, self.experiments, self.models, self.uplift):
            part.refresh()
        self.exposures.start()

    def start(self) -> None:
        self.aliases.start()
        self.catalog.start()
        self.experiments.start()
        self.models.start()
        self.uplift.start()
        self.exposures.start()

    def stop(self) -> None:
        self.limiter.stop()
        for part in (self.uplift, self.models, self.aliases, self.experiments, self.catalog, self.exposures):
            part.stop()
