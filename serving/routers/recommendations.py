"""Storefront: recommendations, "also bought" and rankings. Answered from in-process snapshots, no DB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from pydantic_core import to_json

from commerce.catalog import Fulfillment
from commerce.services._util import not_found, stored_form
from serving.ab import Assignment, choose
from serving.catalog import CatalogSnapshot
from serving.deps import (
    PrincipalDep,
    StateDep,
    Storefront,
    StorefrontShopperId,
    ensure_product_visible,
    ensure_shopper,
)
from serving.logged_pages import logged_page
from serving.model_store import ModelSnapshot
from serving.recommend import Page, buy_again, recommend
from serving.routers.common import MAX_N, card, catalog_or_503
from serving.schemas.base import PLAIN_INT
from serving.schemas.recommendations import (
    BuyAgainPage,
    BuyAgainQuery,
    RankedProduct,
    RankingPage,
    RankingPeriod,
    RecommendationPage,
    RecommendationQuery,
    SimilarPage,
)
from serving.sessions import blend, long_term_scores
from serving.state import ServingState

router = APIRouter(tags=["storefront"])


def _items(catalog: CatalogSnapshot, page: Page) -> list[dict]:
    """Items as plain dicts: values come typed from the snapshot, and the hot path serialises them
    directly (the FastAPI routes validate them against the response model)."""
    return [
        {
            **card(catalog, p.position),
            "rank": i,
            "score": p.score,
            "reason": p.reason,
            "sponsored": p.sponsored,
        }
        for i, p in enumerate(page.picks, start=1)
    ]


def _model_info(
    model: ModelSnapshot, alias: str, alias_fallback_reason: str | None = None, source: str = "online"
) -> dict:
    return {
        "name": model.model_label,
        "registered_name": model.name,
        "alias": alias,
        "version": model.version,
        "fallback": model.recommender is None,
        "fallback_reason": model.fallback_reason,
        "alias_fallback_reason": alias_fallback_reason,
        "source": source,
    }


def _card_json(catalog: CatalogSnapshot, pos: int) -> bytes:
    """A product card as the start of a JSON object (`{...,`), encoded once per catalog snapshot."""
    encoded = catalog.encoded_cards.get(pos)
    if encoded is None:
        encoded = catalog.encoded_cards[pos] = to_json(card(catalog, pos))[:-1] + b","
    return encoded


def shopper_page(
    state: ServingState, shopper_id: str, query: RecommendationQuery, session_items: list[str] | None = None
) -> dict:
    """One recommendation page (a `RecommendationPage` as a dict), for the route below; `session_items`
    are the live items of `query.session_id` (written under the caller's key)."""
    catalog, page, chosen, session, source = _compose(state, shopper_id, query, session_items)
    return {
        "shopper_id": shopper_id,
        "context": query.context,
        "items": _items(catalog, page),
        "model": _model_info(chosen.model, chosen.alias, chosen.alias_fallback_reason, source),
        "experiments": chosen.variants,
        "session": session,
    }


def shopper_page_json(state: ServingState, shopper_id: str, query: RecommendationQuery) -> bytes:
    """The same page as `shopper_page`, encoded straight to JSON bytes for the ASGI fast path
    (serving/fastpath.py): cards come pre-encoded, so a request encodes only its ranks and scores."""
    catalog, page, chosen, _, source = _compose(state, shopper_id, query)
    head = {
        "shopper_id": shopper_id,
        "context": query.context,
        "model": _model_info(chosen.model, chosen.alias, chosen.alias_fallback_reason, source),
        "experiments": chosen.variants,
        "session": None,  # the fast path never serves a session_id query
    }
    return page_json(catalog, page, head)


def page_json(catalog: CatalogSnapshot, page: Page, head: dict) -> bytes:
    """`head` plus the page's `items`, encoded to JSON bytes: cards come pre-encoded, so a request
    encodes only its ranks and scores."""
    items = b",".join(
        b'%s"rank":%d,"score":%s,"reason":%s,"sponsored":%s}'
        % (
            _card_json(catalog, p.position),
            i,
            to_json(p.score),
            to_json(p.reason),
            b"true" if p.sponsored else b"false",
        )
        for i, p in enumerate(page.picks, start=1)
    )
    return b'%s,"items":[%s]}' % (to_json(head)[:-1], items)


def _compose(
    state: ServingState, shopper_id: str, query: RecommendationQuery, session_items: list[str] | None = None
) -> tuple[CatalogSnapshot, Page, Assignment, dict | None, str]:
    """The page, the experiment assignment behind it, what a live session added to it, where its scores
    came from (`online` or `precomputed`), and the exposures it causes (queued)."""
    catalog = catalog_or_503(state)
    if query.context != "home" and not query.product_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"context={query.context} needs product_id"
        )
    seeds = []
    if query.context != "home":
        seeds = [catalog.index[p] for p in catalog.public_context(query.product_id)]
    # The snapshot is read once: a concurrent swap cannot mix two models in one page.
    chosen = choose(
        state.experiments.current or (), shopper_id, state.models, state.settings.model_alias, state.aliases
    )
    ranked, session, source = None, None, "online"
    if query.session_id and session_items is not None and query.context == "home":
        ranked, session = _blend_session(
            state, catalog, chosen.model, shopper_id, query.session_id, session_items
        )
    elif query.context == "home" and not (chosen.interleave or chosen.explore):
        ranked = _precomputed(state, catalog, chosen.model, shopper_id, query.n)
        source = "online" if ranked is None else "precomputed"
    options = dict(
        category=query.category,
        fulfillment=query.fulfillment,
        seeds=seeds,
        fill_category=catalog.category_ids[seeds[0]] if seeds and query.category is None else None,
    )
    if chosen.exposed and (chosen.interleave or chosen.explore):
        page, rows = logged_page(catalog, chosen, shopper_id, query.n, state.policy, **options)
        state.exposures.note_page(*chosen.exposed[0], shopper_id, rows, datetime.now(UTC))
    else:
        page = recommend(
            catalog, chosen.model, shopper_id, query.n, policy=state.policy, ranked=ranked, **options
        )
    if page.fallback:
        state.metrics.fallbacks.inc()
    if chosen.exposed:
        state.exposures.note(shopper_id, chosen.exposed)
    return catalog, page, chosen, session, source


def _precomputed(
    state: ServingState, catalog: CatalogSnapshot, model: ModelSnapshot, shopper_id: str, n: int
) -> tuple | None:
    """The shopper's batch-scored list as `recommend`'s ranked candidates, when one exists, was made by
    the very model version being served and is long enough for the page; else None (score online)."""
    lists = state.precomputed.current if state.precomputed is not None else None
    if (
        lists is None
        or model.recommender is None
        or (model.name, model.version) != (lists.model, lists.version)
        or n > lists.n
    ):
        return None
    found = lists.lookup(shopper_id)
    if found is None:
        return None
    products, scores = found
    positions = np.fromiter((catalog.index.get(p, -1) for p in products), dtype=np.int64, count=len(products))
    known = positions >= 0  # products gone from the catalog since the batch ran
    return positions[known], scores[known], f"{model.model_label}:precomputed"


def _blend_session(
    state: ServingState,
    catalog: CatalogSnapshot,
    model: ModelSnapshot,
    shopper_id: str,
    session_id: str,
    items: list[str],
) -> tuple[tuple | None, dict]:
    """The session model's candidates re-ranked with the long-term model's scores (`blend`, weight
    `session_blend_weight`), then the long-term model's own list, and the page's `session` report.
    Without session items or a session model the page stays long-term."""
    items = catalog.public_context(items)[-state.settings.session_max_items :]
    session_model = state.session_models.current
    report = {"session_id": session_id, "model": session_model.model_label, "version": session_model.version}
    if not items or session_model.recommender is None:
        return None, {**report, "items": items, "blend_weight": None}
    pool = state.policy.candidate_pool
    recent = state.sessions.ranker.candidates(catalog, session_model.recommender, items, pool)
    weight = state.settings.session_blend_weight
    taste = long_term_scores(model, shopper_id, recent[0], catalog, pool)
    positions, scores = blend(recent, taste, weight)
    if model.recommender is not None:  # then the rest of the long-term list (score 0: after the blend)
        tail, _ = model.top_positions(shopper_id, pool, catalog)
        tail = tail[(tail >= 0) & ~np.isin(tail, positions)]
        positions, scores = np.concatenate([positions, tail]), np.concatenate([scores, np.zeros(len(tail))])
    reason = f"{model.model_label}+{session_model.model_label}"
    return (positions, scores, reason), {**report, "items": items, "blend_weight": weight}


@router.get("/shoppers/{shopper_id}/recommendations", response_model=RecommendationPage)
async def shopper_recommendations(
    principal: Storefront,  # first: a caller refused looks up no shopper
    shopper_id: StorefrontShopperId,
    state: StateDep,
    query: Annotated[RecommendationQuery, Query()],
) -> dict:
    """Ranked products for a shopper, after every serving rule; `model` says what answered. With a
    `session_id` this key wrote events for, the visit's items are blended in and `session` says how."""
    ensure_shopper(principal, shopper_id)
    items = await state.sessions.items(principal.key_id, query.session_id) if query.session_id else None
    return shopper_page(state, shopper_id, query, items)


@router.get("/shoppers/{shopper_id}/buy-again", response_model=BuyAgainPage)
async def shopper_buy_again(
    principal: Storefront,  # first: a caller refused looks up no shopper
    shopper_id: StorefrontShopperId,
    state: StateDep,
    query: Annotated[BuyAgainQuery, Query()],
) -> dict:
    """The shopper's own past purchases that can be bought again, ordered by the served model's
    predicted need (beside the "for you" recommendations)."""
    ensure_shopper(principal, shopper_id)
    catalog = catalog_or_503(state)
    model = state.models.current
    page = buy_again(
        catalog, model, shopper_id, query.n, category=query.category, fulfillment=query.fulfillment
    )
    return {
        "shopper_id": shopper_id,
        "items": _items(catalog, page),
        "model": _model_info(model, state.settings.model_alias),
    }


@router.get("/products/{product_id}/similar", response_model=SimilarPage)
async def similar_products(
    product_id: str,
    state: StateDep,
    principal: PrincipalDep,
    n: Annotated[int, Query(ge=1, le=MAX_N), PLAIN_INT] = 10,
    fulfillment: Fulfillment | None = None,
) -> SimilarPage:
    """Products bought together with this one ("also bought"), filled from its category's best sellers;
    404 where the product's page is (from the catalog in memory: no database read)."""
    catalog = catalog_or_503(state)
    product_id = stored_form(product_id, catalog.index.__contains__)
    pos = catalog.index.get(product_id)
    if pos is None:
        raise not_found("product", product_id)
    ensure_product_visible(principal, product_id, catalog.merchant_list[pos], bool(catalog.public[pos]))
    model = state.models.current
    page = recommend(
        catalog,
        model,
        "",
        n,
        fulfillment=fulfillment,
        seeds=[pos],
        fill_category=catalog.category_ids[pos],
        policy=state.policy,
    )
    return SimilarPage(
        product_id=product_id,
        items=_items(catalog, page),
        model=_model_info(model, state.settings.model_alias),
    )


@router.get("/rankings", response_model=RankingPage)
async def rankings(
    state: StateDep,
    _: PrincipalDep,
    by: Literal["sales", "popularity"] = "sales",
    window: Literal["1d", "7d", "30d", "all"] = "7d",
    category: str | None = None,
    origin: Annotated[str | None, Query(min_length=2, max_length=2, description="ISO country")] = None,
    fulfillment: Fulfillment | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_N), PLAIN_INT] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000), PLAIN_INT] = 0,
) -> RankingPage:
    """Best sellers or most popular products over a window, among products that can be bought."""
    catalog = catalog_or_503(state)
    ranked = catalog.ranking(
        by, window, limit, offset, category=category, fulfillment=fulfillment, origin=origin
    )
    start, end, days = catalog.window_bounds(window)
    return RankingPage(
        by=by,
        window=window,
        items=[
            RankedProduct(**card(catalog, pos), rank=offset + i, value=value)
            for i, (pos, value) in enumerate(ranked, start=1)
        ],
        period=RankingPeriod(start=start, end=end, days=days),
    )
