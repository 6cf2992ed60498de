"""Everything the request path shares, held on `app.state.serving` (one per app, none global)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from commerce.db import read_only_sessions
from crosscart.settings import Settings
from serving.ab import AliasModels, ExposureLog, LiveExperiment
from serving.catalog import CatalogSnapshot
from serving.key_lookups import KeyLookups
from serving.middleware import Metrics
from serving.model_store import ModelStore
from serving.precomputed import PrecomputedLists
from serving.proxies import UntrustedProxyCheck
from serving.recommend import Policy
from serving.refresh import Refreshing
from serving.resilience import DatabaseGate, DatabaseHealth
from serving.revocations import RevocationFeed
from serving.security import FailedAuthThrottle, MetricsAccess, PrincipalCache, RateLimiter
from serving.sessions import SessionState

if TYPE_CHECKING:  # serving.idempotency imports serving.deps, which imports this module
    from serving.idempotency import UnsettledKeys

log = logging.getLogger(__name__)


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
    #: delivery-time quantiles; without a registry the quotes use the partners' published day ranges
    delivery: ModelStore = field(default_factory=lambda: ModelStore(None, "delivery"))
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    # Expires unpaid orders past the payment window (returns their ids); `pending_orders` runs it on a timer.
    sweep_pending: Callable[[], list[int]] | None = None
    pending_orders: Refreshing[list[int]] | None = None
    auth_failures: FailedAuthThrottle = field(default_factory=lambda: FailedAuthThrottle(30))
    db_health: DatabaseHealth = field(default_factory=DatabaseHealth)
    key_lookups: KeyLookups | None = None  # set by create_app (it needs the state itself)
    unsettled_keys: UnsettledKeys | None = None  # Idempotency-Key ends retried; set by create_app
    sessions: SessionState = field(default_factory=SessionState)  # live visits' recent items
    session_models: ModelStore = field(default_factory=lambda: ModelStore(None, "session"))  # session model
    revocations: RevocationFeed | None = None  # key revocations pushed to every replica (with Redis)
    precomputed: Refreshing[PrecomputedLists | None] | None = None  # batch-scored lists, when configured
    proxy_check: UntrustedProxyCheck | None = None  # set by create_app from `forwarded_allow_ips`
    metrics_access: MetricsAccess | None = None  # set by create_app from `metrics_allow`, `metrics_token`
    search_refresh: Refreshing[Any] | None = None  # the search index's loop (`serving.search.SearchRunner`)
    #: `session_factory`'s read-only twin, for requests that only read (serving.deps.get_session)
    read_only_sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.read_only_sessions = read_only_sessions(self.session_factory)

    def refresh_loops(self) -> list[Refreshing[Any]]:
        """Every periodic refresh of this replica: what `/v1/ready/details` and `/metrics` report."""
        loops = (self.catalog, self.experiments, self.search_refresh, self.precomputed, self.pending_orders)
        return [loop for loop in loops if loop is not None]

    def load_once(self) -> None:
        """Load catalog, experiments and models without polling threads (tests, benches); exposures are
        still written in the background (tests call `exposures.flush()` to see them at once)."""
        for part in (
            self.catalog,
            self.experiments,
            self.models,
            self.uplift,
            self.delivery,
            self.session_models,
            *([self.precomputed] if self.precomputed is not None else []),
        ):
            part.refresh()
        self.exposures.start()
        if self.unsettled_keys is not None:
            self.unsettled_keys.start()

    def start(self) -> None:
        self.aliases.start()
        self.catalog.start()
        self.experiments.start()
        self.models.start()
        self.uplift.start()
        self.delivery.start()
        self.session_models.start()
        self.exposures.start()
        if self.unsettled_keys is not None:
            self.unsettled_keys.start()
        if self.pending_orders is not None:
            self.pending_orders.start()
        if self.precomputed is not None:
            self.precomputed.start()

    def stop(self) -> None:
        """Stop and join the background threads (the limiter's breaker, an asyncio task, is stopped apart)."""
        parts = (self.delivery, self.session_models, self.uplift, self.models, self.aliases, self.experiments)
        for part in (*parts, self.catalog, self.exposures):
            part.stop()
        if self.unsettled_keys is not None:
            self.unsettled_keys.stop()
        if self.pending_orders is not None:
            self.pending_orders.stop()
        if self.precomputed is not None:
            self.precomputed.stop()

    def expire_pending_orders(self) -> int:
        """Expire unpaid orders past the payment window now; how many this call expired (0 on failure)."""
        if self.sweep_pending is None:
            return 0
        try:
            return len(self.sweep_pending())
        except Exception as exc:  # the caller's request goes on; the periodic sweep retries
            log.warning("expiring unpaid orders failed: %s", exc)
            return 0
