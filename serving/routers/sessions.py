"""Storefront: recommendations for a live visit (anonymous or signed in), from the session model."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query

from serving.catalog import CatalogSnapshot
from serving.deps import StateDep, Storefront
from serving.model_store import ModelSnapshot
from serving.recommend import Page, recommend
from serving.routers.common import MAX_N, catalog_or_503
from serving.routers.recommendations import _items, _model_info, page_json
from serving.schemas.sessions import SessionPageQuery, SessionRecommendationPage
from serving.sessions import SESSION_ID_PATTERN
from serving.state import ServingState

router = APIRouter(tags=["storefront"])

SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN, description="The visit's opaque random token.")]


def _compose(
    state: ServingState, items: list[str], shopper_id: str | None, query: SessionPageQuery
) -> tuple[CatalogSnapshot, Page, ModelSnapshot, list[str]]:
    """The page for a visit's `items` (the newest `session_max_items` of them, also returned)."""
    catalog = catalog_or_503(state)
    items = catalog.public_context(items)[-state.settings.session_max_items :]
    snapshot = state.session_models.current
    pool = state.policy.candidate_pool
    positions, scores = state.sessions.ranker.candidates(catalog, snapshot.recommender, items, pool)
    visited = catalog.positions(np.array(items, dtype=object))
    visited = visited[visited >= 0]
    page = recommend(
        catalog,
        snapshot,
        shopper_id or "",
        query.n,
        category=query.category,
        fulfillment=query.fulfillment,
        fill_category=catalog.category_ids[visited[-1]] if len(visited) and query.category is None else None,
        # a visit's intent is usually one category: no per-category cap (merchant caps still apply)
        policy=replace(state.policy, max_per_category=MAX_N),
        ranked=(positions, scores, snapshot.model_label),
        exclude=visited.tolist(),
    )
    return catalog, page, snapshot, items


def _head(state: ServingState, snapshot: ModelSnapshot, session_id: str, items: list[str]) -> dict:
    return {
        "session_id": session_id,
        "model": _model_info(snapshot, state.settings.model_alias),
        "session": {
            "session_id": session_id,
            "model": snapshot.model_label,
            "version": snapshot.version,
            "items": items,
            "blend_weight": None,
        },
    }


def session_page(
    state: ServingState, items: list[str], shopper_id: str | None, session_id: str, query: SessionPageQuery
) -> dict:
    """One `SessionRecommendationPage` as a dict from the visit's `items`, for the route below."""
    catalog, page, snapshot, items = _compose(state, items, shopper_id, query)
    return {**_head(state, snapshot, session_id, items), "items": _items(catalog, page)}


def session_page_json(
    state: ServingState, items: list[str], shopper_id: str | None, session_id: str, query: SessionPageQuery
) -> bytes:
    """The same page encoded straight to JSON bytes with pre-encoded cards, for the ASGI fast path."""
    catalog, page, snapshot, items = _compose(state, items, shopper_id, query)
    return page_json(catalog, page, _head(state, snapshot, session_id, items))


@router.get("/sessions/{session_id}/recommendations", response_model=SessionRecommendationPage)
async def session_recommendations(
    session_id: SessionId,
    state: StateDep,
    principal: Storefront,
    query: Annotated[SessionPageQuery, Query()],
) -> dict:
    """What to show next in this visit: the session model ranks from the visit's recent items (those this
    key sent events for); products already in the visit are left out; free slots are filled with the best
    sellers of the last item's category, or of the store for an unknown or empty session. Unlike a home
    page, one category may fill the page: a visit usually pursues one need."""
    items = await state.sessions.items(principal.key_id, session_id)
    return session_page(state, items, principal.shopper_id, session_id, query)
