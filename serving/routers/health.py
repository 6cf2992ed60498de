"""Operations: liveness, readiness and Prometheus metrics (no authentication, no rate limit)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from serving.deps import StateDep

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    catalog_products: int | None
    catalog_error: str | None
    model: str
    model_version: str | None
    fallback_reason: str | None
    uplift_model_version: str | None


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(state: StateDep, response: Response) -> Readiness:
    """Ready once the catalog snapshot is loaded and the model store has decided what to serve (a model,
    warmed up, or the popularity fallback with its reason)."""
    catalog, model = state.catalog.current, state.models.current
    body = Readiness(
        ready=catalog is not None and state.models.decided,
        catalog_products=None if catalog is None else len(catalog),
        catalog_error=state.catalog.last_error,
        model=model.model_label,
        model_version=model.version,
        fallback_reason=model.fallback_reason,
        uplift_model_version=state.uplift.current.version,
    )
    if not body.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return body


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition of this process's counters."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
