"""Registered models (data scientist, admin read; admin moves aliases): versions, metrics, plots, promote.

Promotion is moving an alias (`champion` by default) in the MLflow registry; this replica and every other
pick the new version up on their next poll of the alias.
"""

from __future__ import annotations

import tempfile
import threading
import time

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from commerce.db import transaction
from serving.ab import ALIAS
from serving.audit import audit
from serving.deps import Admin, ModelReader, StateDep
from serving.schemas.models import AliasIn, ModelVersionOut, RegisteredModelOut
from serving.security import Principal
from serving.state import ServingState

router = APIRouter(prefix="/models", tags=["models"])
REGISTRY_CACHE_SECONDS = 15.0


class RegistryCache:
    """Versions per (registry, model) for a few seconds: reading them costs several MLflow round trips
    (hundreds of ms); this replica's own alias moves clear it at once, other writers show within the TTL.

    A read that began before a clear is not stored: it may hold the registry as it was before the alias
    move, and would otherwise show the old champion for a whole TTL after the move."""

    def __init__(self, ttl: float = REGISTRY_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, list]] = {}
        self._generation = 0  # clears so far
        self._lock = threading.Lock()

    def versions(self, uri: str, name: str) -> list:
        from training.registry_view import model_versions

        with self._lock:
            hit, generation = self._entries.get((uri, name)), self._generation
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found = model_versions(uri, name)
        with self._lock:
            if self._generation == generation:
                self._entries[(uri, name)] = (time.monotonic() + self.ttl, found)
        return found

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


registry_cache = RegistryCache()


def served_models(state: ServingState) -> dict[str, str]:
    """Registered name -> what the API serves it as."""
    settings = state.settings
    return {settings.model_name: "recommender", settings.uplift_model_name: "uplift"}


def _name(state: ServingState, name: str) -> str:
    if name not in served_models(state):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no served model named {name!r}")
    return name


def list_models(state: ServingState) -> list[RegisteredModelOut]:
    uri = state.settings.resolved_mlflow_uri
    return [
        RegisteredModelOut(
            name=name,
            role=role,
            versions=[
                ModelVersionOut(**{**v.__dict__, "aliases": list(v.aliases), "plots": list(v.plots)})
                for v in registry_cache.versions(uri, name)
            ],
        )  # fmt: skip
        for name, role in served_models(state).items()
    ]


@router.get("", response_model=list[RegisteredModelOut])
async def get_models(state: StateDep, _: ModelReader) -> list[RegisteredModelOut]:
    """The recommender and the uplift model: every version with its aliases, metrics and plots."""
    return await run_in_threadpool(list_models, state)


def move_alias(state: ServingState, principal: Principal, name: str, alias: str, version: str) -> None:
    """Move the alias (API and console alike) and audit it: which version every shopper is served, and
    who chose it, was the one privileged change the audit log did not show. The entry is written first,
    so a database that cannot take it leaves the alias where it was (it moved first, then went
    unaudited); the registry is outside the transaction, so a commit failing after the move puts the
    alias back where it pointed."""
    from training.registry_view import alias_version, set_alias

    if not ALIAS.match(alias):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid alias {alias!r}")
    uri, moved, previous = state.settings.resolved_mlflow_uri, False, None
    try:
        with transaction(state.session_factory) as session:
            audit(
                session,
                principal,
                "model.alias_moved",
                "model",
                _name(state, name),
                alias=alias,
                version=version,
            )
            previous = alias_version(uri, name, alias)
            set_alias(uri, name, version, alias)
            moved = True
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except BaseException:
        if moved:  # the commit failed: no entry, so no move
            set_alias(uri, name, previous, alias)
        raise
    finally:
        registry_cache.clear()


@router.put("/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
async def promote(name: str, alias: str, body: AliasIn, state: StateDep, admin: Admin) -> Response:
    """Point `alias` at a version: promote a challenger to `champion`, or roll back to an older one."""
    await run_in_threadpool(move_alias, state, admin, name, alias, body.version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def read_plot(state: ServingState, name: str, version: str, path: str) -> bytes:
    from training.registry_view import plot_bytes

    found = [v for v in registry_cache.versions(state.settings.resolved_mlflow_uri, _name(state, name))
             if v.version == version]  # fmt: skip
    if not found or path not in found[0].plots:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name} v{version} has no plot {path!r}")
    with tempfile.TemporaryDirectory() as tmp:
        return plot_bytes(state.settings.resolved_mlflow_uri, found[0].run_id, path, tmp)


#: A plot is whatever file a training run logged: an SVG may carry scripts, which would run with the
#: viewer's console session when the plot is opened. It is served as an inert, sandboxed document.
PLOT_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def plot_response(data: bytes, path: str) -> Response:
    """A plot for the API and the console alike (PNG or SVG by its suffix)."""
    media = "image/svg+xml" if path.endswith(".svg") else "image/png"
    return Response(data, media_type=media, headers=PLOT_HEADERS)


@router.get(
    "/{name}/versions/{version}/{path:path}",
    response_class=Response,
    responses={507: {"description": "the server's disk is full: the plot cannot be copied"}},
)
async def plot(name: str, version: str, path: str, state: StateDep, _: ModelReader) -> Response:
    """A plot of the version's training run (PNG or SVG)."""
    return plot_response(await run_in_threadpool(read_plot, state, name, version, path), path)
