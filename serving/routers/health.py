"""Operations: liveness and readiness (no authentication, no rate limit), and Prometheus metrics for the
clients `MetricsAccess` admits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from crosscart.demo_state import unfinished_load
from serving.deps import Admin, StateDep, bearer
from serving.http import HEALTH_BODY
from serving.logs import MASK, redact
from serving.refresh import STALE_INTERVALS, FailureCode, LoopStatus, Refreshing

router = APIRouter(tags=["operations"])
admin_router = APIRouter(tags=["operations"])  # under /v1, behind a key
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")  # `user:password@` in a URL


def _for_admins(message: str | None) -> str | None:
    """A failing check's message as `/v1/ready/details` shows it: paths, SQL and host names kept (what the
    operator needs), credentials not: the user and password of a URL (an MLflow or Redis address with
    them in it), keys and ID numbers (`serving.logs.redact`). An admin key is not the servers' secrets."""
    return None if message is None else redact(_URL_CREDENTIALS.sub(f"{MASK}@", message))


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    database: Literal["up", "degraded", "read-only", "unavailable"] = Field(
        description="`read-only`: the server answers but takes no writes (a standby after a failover); "
        "writes are refused with 503 meanwhile. `degraded`: ready, but a new connection was refused for "
        "the connection limit in the last 30 s; requests that need one are refused with 503 meanwhile. "
        "A refusal for the limit while no connection is in use (nothing can be served) is `unavailable`."
    )
    redis: Literal["up", "unavailable", "evicting", "not configured"] = Field(
        description="The shared rate-limit store; while unavailable, or `evicting` (full, it would evict "
        "the counters: a `maxmemory` with a policy other than `noeviction`), each replica counts locally "
        "(not a reason to be unready)."
    )
    revocations: Literal["pushed", "polling", "not configured"] = Field(
        description="How key revocations from other replicas reach this one: `pushed` over Redis (within "
        "a second), `polling` the database every `auth_poll_seconds` while Redis is unreachable, or `not "
        "configured` (no Redis: other replicas' revocations take up to the key cache's 30 s)."
    )
    catalog_products: int | None
    catalog_error: FailureCode | None = Field(
        description="Why the last catalog reload failed, in one word (the whole message is in the log, "
        "`refreshing catalog failed`): `unavailable` (the database), `missing`, `unreadable`, `corrupt` or "
        "`failed`; the snapshot loaded before keeps serving. The *_error fields answer anyone, so they "
        "never carry an exception's text (paths, SQL, host names)."
    )
    model: str
    model_version: str | None
    fallback_reason: str | None
    model_alias_error: Literal["load-failed", "score-failed"] | None = Field(
        description="The alias points at a version that cannot be served (the previous model or the "
        "popularity fallback answers meanwhile; the log names the version and the error); null when it "
        "points at what is served."
    )
    registry_error: FailureCode | None = Field(
        None,
        description="Why the last check of the model alias failed: `unavailable` (the registry "
        "unreachable), or its database file `missing`, `unreadable` or `corrupt` (the log and `crosscart "
        "doctor` name the file): the loaded model, or the popularity fallback, answers meanwhile; null "
        "when the check succeeded.",
    )
    uplift_model_version: str | None
    precomputed_error: FailureCode | None = Field(
        None,
        description="Why the last load of the `crosscart batch-score` lists failed (`corrupt`: a part cut "
        "short; `missing`: the published batch or a part gone from Redis; the log has the message): the "
        "batch loaded before keeps serving, or pages are scored online; null when it succeeded or no "
        "lists are configured.",
    )
    demo_load: Literal["unfinished"] | None = Field(
        default=None,
        description="`unfinished`: `crosscart demo` (`make run`) began loading the marketplace into this "
        "database and was stopped before it finished, so the database holds part of it; not ready until "
        "a rerun of the demo finishes the load. Null otherwise, always for a database the demo never loaded.",
    )
    untrusted_proxy: str | None = Field(
        default=None,
        description="An address that sent X-Forwarded-For without being in CROSSCART_FORWARDED_ALLOW_IPS:"
        " every visitor behind it counts as one client; null when none was seen by this worker.",
    )


@router.get("/health", response_model=Health)
async def health() -> Response:
    """The process answers. Served by `crosscart serve`, its HTTP protocol answers this itself, before the
    app (serving.http); this route answers the same elsewhere (tests, other servers)."""
    return Response(HEALTH_BODY, media_type="application/json")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(state: StateDep, response: Response) -> Readiness:
    """Ready once the catalog snapshot is loaded, the model store has decided what to serve (a model,
    warmed up, or the popularity fallback with its reason) and the database answers (checked at most
    once a second; reads keep being served from memory while it does not), unless the demo's load into
    the database is unfinished (`crosscart.demo_state`: a few bytes read per call). Redis is probed at
    most once a second too, within its timeout (`CROSSCART_REDIS_TIMEOUT_SECONDS`)."""
    catalog, model = state.catalog.current, state.models.current
    database_up = await state.db_health.check(state.session_factory.kw["bind"], state.db_gate)
    redis = await state.limiter.check_store()
    broken = state.models.broken
    settings = state.settings
    demo_unfinished = unfinished_load(settings.data_dir.resolve(), settings.resolved_database_url) is not None
    body = Readiness(
        ready=catalog is not None and state.models.decided and database_up and not demo_unfinished,
        database=(
            ("degraded" if state.db_health.degraded else "up")
            if database_up
            else "read-only"
            if state.db_health.read_only
            else "unavailable"
        ),
        redis=redis,
        revocations=(
            "not configured"
            if state.revocations is None
            else "pushed"
            if state.revocations.listening
            else "polling"
        ),
        catalog_products=None if catalog is None else len(catalog),
        catalog_error=state.catalog.error_code,
        model=model.model_label,
        model_version=model.version,
        fallback_reason=model.fallback_reason,
        model_alias_error=None if broken is None else broken[1],
        registry_error=state.models.registry_error,
        uplift_model_version=state.uplift.current.version,
        precomputed_error=None if state.precomputed is None else state.precomputed.error_code,
        demo_load="unfinished" if demo_unfinished else None,
        untrusted_proxy=None if state.proxy_check is None else state.proxy_check.seen_from,
    )
    if not body.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return body


class RefreshLoop(BaseModel):
    """One periodic refresh (`serving.refresh.Refreshing`) as this worker runs it."""

    status: LoopStatus = Field(
        description="`failing`: the last refresh failed, the data loaded before keeps serving; `stale`: "
        f"nothing failed but the data is older than {STALE_INTERVALS} intervals (a load hung); `not "
        "loaded`: no refresh has succeeded or failed yet."
    )
    every_seconds: float
    last_success: datetime | None = Field(description="When the data served was read (its load began).")
    age_seconds: float | None = Field(description="How old the data served is; null: never loaded.")
    consecutive_failures: int
    error: FailureCode | None = Field(
        description="Why the refreshes fail, in `/ready`'s words; the message is in the log (`refreshing "
        "NAME failed`). Null once one succeeds."
    )


def _loop(loop: Refreshing[Any]) -> RefreshLoop:
    age = loop.age_seconds()
    return RefreshLoop(
        status=loop.status(),
        every_seconds=loop.every_seconds,
        last_success=None if loop.last_success is None else datetime.fromtimestamp(loop.last_success, UTC),
        age_seconds=None if age is None else round(age, 3),
        consecutive_failures=loop.failures,
        error=loop.error_code,
    )


class ReadinessDetails(BaseModel):
    """The whole messages behind `/ready`'s one-word errors (null: that check passed), and the state of
    every periodic refresh."""

    database_error: str | None = Field(description="The error that began the current database outage.")
    catalog_error: str | None
    model_alias_version: str | None = Field(description="The version the alias points at that cannot serve.")
    model_alias_error: str | None
    registry_error: str | None
    precomputed_error: str | None
    refresh: Literal["ok", "degraded"] = Field(
        description="`degraded`: a refresh loop is not `ok`. Not a reason to be unready: the data loaded "
        "before keeps serving (stale data beats none); `refresh_loops` says which and since when."
    )
    refresh_loops: dict[str, RefreshLoop] = Field(description="By loop name (catalog, search, ...).")


@admin_router.get("/ready/details", response_model=ReadinessDetails)
def ready_details(state: StateDep, admin: Admin) -> ReadinessDetails:
    """Why `/ready`'s checks fail, as the log says it (admin only: the messages can name file paths, SQL,
    host names); what an operator without access to the logs reads next to `crosscart doctor`."""
    broken = state.models.broken
    loops = {loop.name: _loop(loop) for loop in state.refresh_loops()}
    return ReadinessDetails(
        database_error=_for_admins(state.db_health.last_error),
        catalog_error=_for_admins(state.catalog.last_error),
        model_alias_version=None if broken is None else broken[0],
        model_alias_error=None if broken is None else _for_admins(broken[2]),
        registry_error=_for_admins(state.models.registry_message),
        precomputed_error=None if state.precomputed is None else _for_admins(state.precomputed.last_error),
        refresh="ok" if all(loop.status == "ok" for loop in loops.values()) else "degraded",
        refresh_loops=loops,
    )


@router.api_route(
    "/metrics",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    response_class=Response,
    include_in_schema=False,
)
def metrics(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """Prometheus exposition of this process's counters (of all workers' under `serve --workers N`), for
    an allowed client address or the metrics token, at most `EXPOSITION_SECONDS` old and built on a
    worker thread, not on the event loop. Anyone else gets the 404 of a path that does not exist, whatever
    the method (every method is routed here: the router's 405 told a scanner there was something here to
    guess a token for); an admitted client's other methods get 405."""
    access, token = state.metrics_access, None if credentials is None else credentials.credentials
    if access is None or not access.admits(request.scope, token):
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    if request.method != "GET":
        raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": "GET"})
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
