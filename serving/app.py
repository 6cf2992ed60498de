"""The app factory: `create_app(settings)` wires settings, database, snapshots, models and routers.

Nothing here is global: tests build as many apps as they like, each with its own database, model source
and metrics registry, and override any dependency.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from commerce.db import make_engine, make_session_factory
from crosscart.settings import Settings, get_settings
from serving import errors
from serving.ab import AliasModels, ExposureLog, LiveExperiment
from serving.catalog import CatalogSnapshot
from serving.deps import current_principal
from serving.fastpath import RecommendationFastPath
from serving.middleware import BodySizeLimit, Metrics, MetricsMiddleware
from serving.model_store import MlflowModelSource, ModelSource, ModelStore, load_pyfunc_version
from serving.recommend import Policy
from serving.refresh import Refreshing
from serving.security import RateLimiter
from serving.state import ServingState

log = logging.getLogger(__name__)

CATALOG_REFRESH_SECONDS = 30.0
API_PREFIX = "/v1"
WARM_SHOPPERS = 2_000


def _warm_up(snapshot, state: ServingState, limit: int) -> None:
    catalog = state.catalog.current
    if catalog is not None and limit > 0:
        shoppers = list(itertools.islice(catalog.purchased, limit))
        snapshot.warm(shoppers, state.policy.candidate_pool, catalog)


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    model_source: ModelSource | None = None,
    uplift_source: ModelSource | None = None,
    catalog_loader: Callable[[], CatalogSnapshot] | None = None,
    catalog_refresh_seconds: float = CATALOG_REFRESH_SECONDS,
    policy: Policy | None = None,
    start_background: bool = True,
    warm_shoppers: int = WARM_SHOPPERS,
) -> FastAPI:
    """Build the API. Defaults come from `settings`; the keyword arguments let tests and benches swap in
    a database, model sources or a catalog; `start_background=False` loads everything once at start-up
    without the polling threads (tests drive `refresh()` themselves). A new model version goes live only
    after the `warm_shoppers` most active shoppers' scores are precomputed."""
    from serving.ab import load_live_experiments
    from serving.catalog_db import load_catalog
    from serving.routers import (
        catalog,
        events,
        experiments,
        health,
        keys,
        marketing,
        orders,
        recommendations,
        search,
    )
    from serving.search_setup import build_search

    settings = settings or get_settings()
    if session_factory is None:
        session_factory = make_session_factory(make_engine(settings.resolved_database_url))
    uri = settings.resolved_mlflow_uri
    model_source = model_source or MlflowModelSource(uri, settings.model_name, settings.model_alias)

    def load_experiments() -> list[LiveExperiment]:
        """Running experiments; loads (or drops) the model stores of the aliases their variants serve."""
        live = load_live_experiments(session_factory)
        state.aliases.sync({a for e in live for a in e.model_aliases.values()} - {settings.model_alias})
        return live

    def warm_up(snapshot) -> None:
        _warm_up(snapshot, state, warm_shoppers)

    def load_catalog_snapshot() -> CatalogSnapshot:
        """A new catalog, with the served models' item -> position maps built before it goes live."""
        catalog = catalog_loader() if catalog_loader is not None else load_catalog(session_factory)
        for store in (state.models, *state.aliases.stores.values()):
            store.current.item_positions(catalog)
        return catalog

    state = ServingState(
        settings=settings,
        session_factory=session_factory,
        catalog=Refreshing("catalog", load_catalog_snapshot, catalog_refresh_seconds),
        experiments=Refreshing("experiments", load_experiments, catalog_refresh_seconds),
        models=ModelStore(model_source, settings.model_name, settings.model_poll_seconds, warm_up=warm_up),
        aliases=AliasModels(model_source, settings.model_name, settings.model_poll_seconds, warm_up),
        exposures=ExposureLog(session_factory),
        uplift=ModelStore(
            uplift_source
            or MlflowModelSource(uri, settings.uplift_model_name, settings.model_alias, load_pyfunc_version),
            settings.uplift_model_name,
            settings.model_poll_seconds,
        ),
        limiter=RateLimiter(
            settings.rate_limit_per_minute, settings.rate_limit_anonymous_per_minute, settings.redis_url
        ),
        metrics=Metrics(),
        policy=policy or Policy(),
    )

    state.metrics.model_swaps.set_function(lambda: state.models.swaps)
    search_runner = build_search(settings, session_factory, state, catalog_refresh_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if start_background:
            state.start()
        else:
            state.load_once()
        search_runner.start(start_background)
        try:
            yield
        finally:
            search_runner.stop()
            state.stop()

    app = FastAPI(
        title="CrossCart API",
        version="1.0.0",
        summary="Recommendations, catalog, orders and precision marketing for a cross-border marketplace.",
        lifespan=lifespan,
    )
    app.state.serving = state
    app.state.search = search_runner.service
    errors.install(app)
    app.include_router(health.router)
    v1 = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(current_principal)], responses=errors.ERROR_RESPONSES
    )
    for module in (recommendations, catalog, orders, events, marketing, experiments, keys, search):
        v1.include_router(module.router)
    app.include_router(v1)
    app.add_middleware(RecommendationFastPath, state=state)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, prefixes=(API_PREFIX,))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
