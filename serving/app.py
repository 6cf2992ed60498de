"""The app factory: `create_app(settings)` wires settings, database, snapshots, models and routers.

Nothing here is global: tests build as many apps as they like, each with its own database, model source
and metrics registry, and override any dependency.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
from collections.abc import Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session, sessionmaker

from commerce.db import make_engine, make_session_factory
from commerce.services.pending import expire_pending_orders
from crosscart.settings import Settings, get_settings
from serving import console, deps, docs_pages, errors
from serving.ab import AliasModels, ExposureLog, LiveExperiment, RunningExperiments, experiment_aliases
from serving.caching import ConditionalGet
from serving.catalog import CatalogSnapshot
from serving.deps import current_principal
from serving.edge import RequestEdge
from serving.fastpath import RecommendationFastPath
from serving.field_access import enforce_field_access
from serving.idempotency import IdempotencyMiddleware, UnsettledKeys
from serving.idempotency import document as document_idempotency
from serving.key_lookups import KeyLookups
from serving.logs import configure_logging
from serving.middleware import BodySizeLimit, Metrics, RateLimitHeaders
from serving.model_store import MlflowModelSource, ModelSource, ModelStore, bound_mlflow_waits
from serving.precomputed import load_precomputed, load_precomputed_redis
from serving.proxies import UntrustedProxyCheck
from serving.recommend import Policy
from serving.refresh import Refreshing
from serving.resilience import (
    AUTH_CONNECTIONS,
    BACKGROUND_CONNECTIONS,
    DatabaseGate,
    DeadlineStamp,
    pool_capacity,
)
from serving.revocations import RevocationFeed
from serving.security import FailedAuthThrottle, MetricsAccess, PrincipalCache, RateLimiter
from serving.state import ServingState
from serving.tracing import setup_tracing
from training.delivery import load_delivery_version
from training.uplift import load_uplift_version

log = logging.getLogger(__name__)

CATALOG_REFRESH_SECONDS = 30.0
API_PREFIX = "/v1"
WARM_SHOPPERS = 2_000


def _warm_up(snapshot, state: ServingState, limit: int) -> None:
    catalog = state.catalog.current
    if catalog is not None and limit > 0:
        shoppers = list(itertools.islice(catalog.purchased, limit))
        snapshot.warm(shoppers, state.policy.candidate_pool, catalog)


def operation_id(route: APIRoute) -> str:
    """The endpoint function's name (`shopper_recommendations`, `list_orders`): stable and readable in
    generated clients, unlike FastAPI's default of name + path + method."""
    return route.name


def _watch_models(state: ServingState) -> None:
    """The model-version info metric (and the swap count) follow every served model store."""

    def watch(model: str, store) -> None:
        def changed(snapshot) -> None:
            state.metrics.served(model, store.name, snapshot.version)
            if store is state.models:
                state.metrics.model_swaps.set(store.swaps)

        store.on_change = changed
        changed(store.current)

    for model, store in (
        ("recommender", state.models),
        ("uplift", state.uplift),
        ("delivery", state.delivery),
        ("session", state.session_models),
    ):
        watch(model, store)


def _gate(settings: Settings, session_factory: sessionmaker[Session]) -> DatabaseGate:
    """Request slots: `db_pool_size`, fewer if the engine's pool cannot also serve the key lookups and the
    background refreshes."""
    requests = settings.db_pool_size
    capacity = pool_capacity(session_factory.kw["bind"])
    if capacity is not None:
        requests = max(1, min(requests, capacity - AUTH_CONNECTIONS - BACKGROUND_CONNECTIONS))
    return DatabaseGate(requests, AUTH_CONNECTIONS, settings.db_wait_seconds)


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    model_source: ModelSource | None = None,
    uplift_source: ModelSource | None = None,
    delivery_source: ModelSource | None = None,
    session_model_source: ModelSource | None = None,
    catalog_loader: Callable[[], CatalogSnapshot] | None = None,
    catalog_refresh_seconds: float = CATALOG_REFRESH_SECONDS,
    policy: Policy | None = None,
    start_background: bool = True,
    warm_shoppers: int = WARM_SHOPPERS,
    span_exporter=None,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the API. Defaults come from `settings`; the keyword arguments let tests and benches swap in
    a database, model sources or a catalog; `start_background=False` loads everything once at start-up
    without the polling threads (tests drive `refresh()` themselves). A new model version goes live only
    after the `warm_shoppers` most active shoppers' scores are precomputed. The session model comes from
    `session_model_source`, else from the registry unless `model_source` was swapped (then none is served).
    `freeze_heap`: the process's heap after start-up is left out of later garbage collections
    (`served_app`, for a process that runs this one app)."""
    from serving.catalog_db import load_catalog
    from serving.routers import (
        audit,
        catalog,
        coupons,
        events,
        experiments,
        health,
        keys,
        logistics,
        marketing,
        models,
        orders,
        recommendations,
        search,
        sessions,
    )
    from serving.search_setup import build_search
    from serving.sessions import SessionState, load_session_version

    settings = settings or get_settings()
    owned_engine = None  # the engine this app made itself, disposed when it stops
    if session_factory is None:
        # Every slot (requests, key lookups, background refreshes) has its connection: no one waits on
        # the pool, and a pool that is somehow empty fails fast into a 503.
        engine = make_engine(
            settings.resolved_database_url,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout=settings.db_statement_timeout_seconds,
            lock_timeout=settings.db_lock_timeout_seconds,
            pool_size=settings.db_pool_size + AUTH_CONNECTIONS + BACKGROUND_CONNECTIONS,
            max_overflow=0,
            pool_timeout=settings.db_wait_seconds,
        )
        session_factory = make_session_factory(engine)
        owned_engine = engine
    db_gate = _gate(settings, session_factory)
    bound_mlflow_waits(os.environ)
    uri = settings.resolved_mlflow_uri
    if session_model_source is None and model_source is None:
        session_model_source = MlflowModelSource(
            uri, settings.session_model_name, settings.model_alias, load_session_version
        )
    model_source = model_source or MlflowModelSource(uri, settings.model_name, settings.model_alias)

    running = RunningExperiments(session_factory, settings.model_alias)

    def load_experiments() -> list[LiveExperiment]:
        """Running experiments within the start caps; loads (or drops) the model stores of the aliases
        their variants serve."""
        live = running.load()
        state.aliases.sync(experiment_aliases(live, settings.model_alias))
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
            or MlflowModelSource(uri, settings.uplift_model_name, settings.model_alias, load_uplift_version),
            settings.uplift_model_name,
            settings.model_poll_seconds,
        ),
        limiter=RateLimiter(
            settings.rate_limit_per_minute,
            settings.rate_limit_anonymous_per_minute,
            settings.redis_url,
            redis_timeout=settings.redis_timeout_seconds,
            replicas=settings.rate_limit_replicas,
            events_per_minute=settings.event_rate_limit_per_minute,
            applications_per_hour=settings.merchant_applications_per_hour,
        ),
        metrics=Metrics(settings.prometheus_multiproc_dir),
        db_gate=db_gate,
        policy=policy or Policy(),
        delivery=ModelStore(
            delivery_source
            or MlflowModelSource(
                uri, settings.delivery_model_name, settings.model_alias, load_delivery_version
            ),
            settings.delivery_model_name,
            settings.model_poll_seconds,
        ),
        principals=PrincipalCache(
            stale_seconds=settings.auth_cache_stale_seconds, poll_seconds=settings.auth_poll_seconds
        ),
        auth_failures=FailedAuthThrottle(settings.auth_failures_per_minute),
        sessions=SessionState(settings.session_max_items, settings.session_ttl_seconds, settings.redis_url),
        session_models=ModelStore(
            session_model_source, settings.session_model_name, settings.model_poll_seconds
        ),
    )

    if settings.precomputed_redis and settings.redis_url:
        url = settings.redis_url
        state.precomputed = Refreshing(
            "precomputed",
            lambda: load_precomputed_redis(url, state.precomputed.current),
            catalog_refresh_seconds,
        )
    elif settings.precomputed_dir:
        directory = settings.precomputed_dir
        state.precomputed = Refreshing(
            "precomputed",
            lambda: load_precomputed(directory, state.precomputed.current),
            catalog_refresh_seconds,
        )
    if settings.redis_url:
        state.revocations = RevocationFeed(
            settings.redis_url, state.principals, timeout=settings.redis_timeout_seconds
        )
    state.unsettled_keys = UnsettledKeys()
    state.key_lookups = KeyLookups(lambda keys: deps._lookup_many(state, keys), db_gate)
    _watch_models(state)
    state.sweep_pending = lambda: expire_pending_orders(session_factory, settings.pending_policy.ttl)
    state.pending_orders = Refreshing("pending-orders", state.sweep_pending, settings.pending_sweep_seconds)
    search_runner = build_search(settings, session_factory, state, catalog_refresh_seconds)
    state.search_refresh = search_runner.loop
    for loop in state.refresh_loops():  # the refresh metrics follow every loop
        loop.on_refresh = state.metrics.refreshed

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        threads = db_gate.ensure_threads()
        log.info(
            "database slots: %d requests, %d key lookups; %d worker threads",
            db_gate.requests,
            db_gate.auth,
            threads,
        )

        def start() -> None:
            if start_background:
                state.start()
            else:
                state.load_once()
            search_runner.start(start_background)
            if freeze_heap:
                gc.collect()  # no garbage frozen with the rest: a frozen cycle is never collected
                gc.freeze()

        def stop() -> None:
            search_runner.stop()
            state.stop()
            state.metrics.close()
            if tracer_provider is not None:
                tracer_provider.shutdown()
            if owned_engine is not None:  # its pooled connections (and SQLite file handles) close now
                owned_engine.dispose()

        # In a worker thread: the first loads query the database (and Redis, for precomputed lists, through
        # a blocking client) and stopping joins threads, which must never hold the event loop.
        await anyio.to_thread.run_sync(start)
        if state.revocations is not None:
            state.revocations.start()
        try:
            yield
        finally:
            if state.revocations is not None:
                await state.revocations.stop()
            state.limiter.stop()  # cancels an asyncio task: on the loop
            await anyio.to_thread.run_sync(stop)

    app = FastAPI(
        title="CrossCart API",
        version="1.0.0",
        summary="Recommendations, catalog, orders and precision marketing for a cross-border marketplace.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
        # A trailing slash is a 404, not a redirect: Starlette builds that redirect's absolute URL from the
        # request's Host header, so `Host: evil.example` made the API answer `Location: http://evil.example/...`
        redirect_slashes=False,
        # one tracing path, `setup_tracing`'s; FastAPI's own would also look up the global OpenTelemetry
        # providers on every request to learn that none is configured
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.serving = state
    app.state.search = search_runner.service
    errors.install(app)
    docs_pages.install(app)
    app.include_router(health.router)
    v1 = APIRouter(dependencies=[Depends(current_principal), Depends(enforce_field_access)])
    # Routes match in this order: the hottest (recommendations, search) first, since every route tried
    # before the right one costs a request CPU (search, matched last, spent a quarter of its time there).
    for module in (
        recommendations, search, catalog, orders, logistics, events, marketing, coupons, experiments,
        models, keys, audit, sessions,
    ):  # fmt: skip
        v1.include_router(module.router)
    v1.include_router(health.admin_router)
    app.include_router(v1, prefix=API_PREFIX)
    console.install(app, settings, state.principals)
    app.add_middleware(IdempotencyMiddleware, session_factory=session_factory, prefix=API_PREFIX)
    document_idempotency(app, API_PREFIX)
    errors.document(app, API_PREFIX)
    app.add_middleware(ConditionalGet)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    configure_logging(settings.log_level, json_format=settings.log_format == "json")
    tracer_provider = setup_tracing(app, session_factory.kw["bind"], settings.otel_endpoint, span_exporter)
    # outside the layers that never touch what the fast path answers (GETs without a body of unthrottled
    # callers, not cached reads): its requests skip them, and are still measured and logged
    state.proxy_check = UntrustedProxyCheck(settings.forwarded_allow_ips)
    state.metrics_access = MetricsAccess(settings.metrics_networks, settings.metrics_token, state.proxy_check)
    app.add_middleware(
        RequestEdge,
        metrics=state.metrics,
        fast=RecommendationFastPath(state),
        access_log=settings.access_log,
        proxy_check=state.proxy_check,
    )
    app.add_middleware(DeadlineStamp, gate=db_gate)
    return app


def served_app() -> FastAPI:
    """`crosscart serve`'s app (each worker's): settings from the environment, and the heap built at
    start-up (every library, the first models and catalog: ~450k objects after a tiny demo) frozen out of
    the garbage collector. Under traffic, full collections over it stopped every request of the worker
    for 0.2-0.4 s a few times a minute (docs/operations.md); a process of tests, building many apps, keeps
    the default."""
    return create_app(freeze_heap=True)
