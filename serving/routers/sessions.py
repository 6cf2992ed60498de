"""Storefront: recommendations for a live visit (anonymous or signed in), from the session model."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Path, Query

from serving.deps import StateDep, Storefront
from serving.recommend import recommend
from serving.routers.common import MAX_N, catalog_or_503
from serving.routers.recommendations import _items, _model_info
from serving.schemas.sessions import SessionRecommendationPage
from serving.sessions import SESSION_ID_PATTERN, session_candidates

router = APIRouter(tags=["storefront"])

SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN, description="The visit's opaque random token.")]


@router.get("/sessions/{session_id}/recommendations", response_model=SessionRecommendationPage)
async def session_recommendations(
    session_id: SessionId,
    state: StateDep,
    principal: Storefront,
    n: Annotated[int, Query(ge=1, le=MAX_N)] = 10,
    category: str | None = None,
    fulfillment: Literal["bonded", "direct_mail"] | None = None,
) -> dict:
    """What to show next in this visit: the session model ranks from the visit's recent items (those this
    key sent events for); products already in the visit are left out; free slots are filled with the best
    sellers of the last item's category, or of the store for an unknown or empty session."""
    catalog = catalog_or_503(state)
    items = state.sessions.items(principal.key_id, session_id)[-state.settings.session_max_items :]
    snapshot = state.session_models.current
    positions, scores = session_candidates(catalog, snapshot.recommender, items, state.policy.candidate_pool)
    visited = catalog.positions(np.array(items, dtype=object))
    visited = visited[visited >= 0]
    page = recommend(
        catalog,
        snapshot,
        principal.shopper_id or "",
        n,
        category=category,
        fulfillment=fulfillment,
        fill_category=catalog.category_ids[visited[-1]] if len(visited) and category is None else None,
        policy=state.policy,
        ranked=(positions, scores, snapshot.model_label),
        exclude=visited.tolist(),
    )
    return {
        "session_id": session_id,
        "items": _items(catalog, page),
        "model": _model_info(snapshot, state.settings.model_alias),
        "session": {
            "session_id": session_id,
            "model": snapshot.model_label,
            "version": snapshot.version,
            "items": items,
        },
    }
