"""Serving-time business rules applied to model output, in process and without database access.

Order of work for one page: model candidates (or, for a product or cart context, items similar to the seeds),
filtered by eligibility and the request's filters, past purchases removed unless the category is
repurchasable, per-merchant and per-category caps, the rest filled from popularity, then sponsored products
placed at fixed positions when relevant to the shopper. A model pick's reason says whether the shopper
bought it before (`ranker:repeat`) or not (`ranker:new`).

The "buy again" list (`buy_again`) holds only the shopper's own repurchasable past purchases, in the
order of the model's scores for them (its predicted need), then the rest by store-wide popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from serving.catalog import CatalogSnapshot
from serving.model_store import ModelSnapshot

#: model scoring spans; a no-op until `serving.tracing.setup_tracing` installs a provider
_tracer = trace.get_tracer("crosscart.serving")
_traced = False  # no request is traced until `setup_tracing` calls `trace_scoring`
_NO_SPAN = nullcontext()


def trace_scoring(tracer) -> None:
    """Requests are traced from now on: scoring inside a traced request gets its span, from `tracer` (the
    latest traced app's provider: the global provider is the first app's, shut down when it stopped)."""
    global _traced, _tracer
    _tracer, _traced = tracer, True


def _scoring_span(model: ModelSnapshot):
    """A `model.score` span inside a traced request, else nothing: even a no-op span costs three context
    managers and a context switch per recommendation, and asking for the current span a context lookup."""
    if not _traced or not trace.get_current_span().is_recording():
        return _NO_SPAN
    return _tracer.start_as_current_span(
        "model.score", attributes={"model": model.model_label, "model.version": model.version or ""}
    )


@dataclass(frozen=True)
class Policy:
    """Page-composition rules; positions are 0-based."""

    max_per_merchant: int = 3
    max_per_category: int = 4
    sponsored_positions: tuple[int, ...] = (2, 7)
    candidate_pool: int = 200  # model candidates fetched (and cached) per shopper before filtering


@dataclass(slots=True)
class Pick:
    position: int  # catalog position
    score: float
    reason: str
    sponsored: bool = False


@dataclass(frozen=True)
class Page:
    picks: list[Pick]
    model: str
    model_version: str | None
    fallback: bool
    fallback_reason: str | None


class _Composer:
    """Accumulates a page while enforcing the caps and the no-duplicates rule. Called for every candidate
    of every page: the catalog's columns and the caps are kept as attributes of its own."""

    def __init__(self, catalog: CatalogSnapshot, mask: np.ndarray, policy: Policy, cap_category: bool):
        self.catalog, self.mask, self.policy, self.cap_category = catalog, mask, policy, cap_category
        self.merchants, self.categories = catalog.merchant_list, catalog.category_list
        self.max_per_merchant, self.max_per_category = policy.max_per_merchant, policy.max_per_category
        self.picks: list[Pick] = []
        self.taken: set[int] = set()
        self.per_merchant: dict[str, int] = {}
        self.per_category: dict[str, int] = {}

    def fits(self, pos: int) -> bool:
        if pos in self.taken or not self.mask[pos]:
            return False
        if self.per_merchant.get(self.merchants[pos], 0) >= self.max_per_merchant:
            return False
        return not (
            self.cap_category and self.per_category.get(self.categories[pos], 0) >= self.max_per_category
        )

    def add(self, pick: Pick, at: int | None = None) -> None:
        pos = pick.position
        self.taken.add(pos)
        merchant, category = self.merchants[pos], self.categories[pos]
        self.per_merchant[merchant] = self.per_merchant.get(merchant, 0) + 1
        self.per_category[category] = self.per_category.get(category, 0) + 1
        if at is None:
            self.picks.append(pick)
        else:
            self.picks.insert(at, pick)


def allowed_mask(
    catalog: CatalogSnapshot,
    shopper_id: str | None,
    *,
    category: str | None = None,
    fulfillment: str | None = None,
    exclude: Sequence[int] = (),
) -> np.ndarray:
    """Eligible products passing the filters, minus non-repurchasable past purchases and `exclude`."""
    mask = catalog.filter_mask(category=category, fulfillment=fulfillment)
    bought = catalog.purchased.get(shopper_id) if shopper_id is not None else None
    if (bought is not None and len(bought)) or len(exclude):
        mask = mask.copy()
        if bought is not None and len(bought):
            mask[bought[~catalog.repurchasable[bought]]] = False
        if len(exclude):
            mask[np.asarray(exclude, dtype=np.int64)] = False
    return mask


def _candidates(
    catalog: CatalogSnapshot,
    model: ModelSnapshot,
    shopper_id: str,
    seeds: Sequence[int],
    pool: int,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Model candidates as (catalog positions, scores), best first, already restricted to `mask`."""
    if model.recommender is None:
        return np.empty(0, dtype=np.intp), np.empty(0)
    if seeds:
        merged: dict[str, float] = {}
        for seed in seeds:
            for item, score in model.recommender.similar_items(catalog.product_ids[seed], n=pool):
                merged[item] = merged.get(item, 0.0) + float(score)
        ranked = sorted(merged.items(), key=lambda kv: -kv[1])
        positions = catalog.positions(np.array([item for item, _ in ranked], dtype=object))
        scores = np.array([score for _, score in ranked])
    else:
        positions, scores = model.top_positions(shopper_id, pool, catalog)
    keep = positions >= 0
    keep[keep] = mask[positions[keep]]
    return positions[keep], scores[keep]


def recommend(
    catalog: CatalogSnapshot,
    model: ModelSnapshot,
    shopper_id: str,
    n: int = 10,
    *,
    category: str | None = None,
    fulfillment: str | None = None,
    seeds: Sequence[int] = (),
    fill_category: str | None = None,
    policy: Policy = Policy(),
    ranked: tuple[np.ndarray, np.ndarray, str] | None = None,
    exclude: Sequence[int] = (),
) -> Page:
    """One page of at most `n` products for `shopper_id`; `seeds` are context products (product page, cart).

    Slots the model cannot fill come from popularity, within `fill_category` first when given (a product
    page falls back to its own category's best sellers before the whole store's). `ranked` (catalog
    positions, scores, reason) replaces the model's candidates (session pages, blends); `exclude` are
    products never shown (e.g. the ones this visit already holds)."""
    mask = allowed_mask(
        catalog, shopper_id, category=category, fulfillment=fulfillment, exclude=[*seeds, *exclude]
    )
    page = _Composer(catalog, mask, policy, cap_category=category is None)
    label = model.model_label
    bought = catalog.purchased.get(shopper_id) if not seeds else None
    before = set(bought.tolist()) if bought is not None else set()
    similar, repeat, new = f"{label}:similar", f"{label}:repeat", f"{label}:new"
    if ranked is None:
        fixed_reason = None
        with _scoring_span(model):
            positions, scores = _candidates(catalog, model, shopper_id, seeds, policy.candidate_pool, mask)
    else:
        positions, scores, fixed_reason = ranked
        keep = mask[positions]
        positions, scores = positions[keep], scores[keep]
    picks, fits, add = page.picks, page.fits, page.add
    for pos, score in zip(positions.tolist(), scores.tolist(), strict=True):
        if len(picks) >= n:
            break
        if fits(pos):
            add(Pick(pos, score, fixed_reason or (similar if seeds else repeat if pos in before else new)))
    # a small category may not fill the page: the store's best sellers take what is left
    for in_category in (True, False) if fill_category is not None else (False,):
        if len(page.picks) >= n:
            break
        fill = mask & catalog.category_mask(fill_category) if in_category else mask
        for pos in catalog.popular(fill):
            if len(page.picks) >= n:
                break
            if page.fits(pos):
                page.add(Pick(pos, float(catalog.popularity["30d"][pos]), reason="popularity"))
    _place_sponsored(catalog, page, shopper_id, n, seeds, policy)
    return Page(
        picks=page.picks[:n],
        model=label,
        model_version=model.version,
        fallback=model.recommender is None,
        fallback_reason=model.fallback_reason,
    )


def _place_sponsored(
    catalog: CatalogSnapshot, page: _Composer, shopper_id: str, n: int, seeds: Sequence[int], policy: Policy
) -> None:
    """Put paid products at the fixed positions, only if they pass every rule and match the shopper's
    interests: a category the shopper bought from, a context product's category, or one already on
    the page."""
    if not catalog.sponsored_list:
        return
    categories = catalog.category_list
    interests = {categories[p.position] for p in page.picks}
    interests.update(categories[s] for s in seeds)
    bought = catalog.purchased.get(shopper_id)
    if bought is not None:
        interests.update(catalog.category_ids[bought].tolist())
    candidates = iter(p for p, category in catalog.sponsored_list if category in interests)
    for slot in policy.sponsored_positions:
        if slot >= n or slot > len(page.picks):
            break
        pos = next((p for p in candidates if page.fits(p)), None)
        if pos is None:
            break
        page.add(Pick(pos, 0.0, reason="sponsored", sponsored=True), at=slot)


def buy_again(
    catalog: CatalogSnapshot,
    model: ModelSnapshot,
    shopper_id: str,
    n: int = 10,
    *,
    category: str | None = None,
    fulfillment: str | None = None,
) -> Page:
    """Up to `n` of the shopper's past purchases that can be bought again, most needed first.

    The model scores only these items (`recommend(..., exclude_seen=False, candidates=...)`); items it
    cannot score follow by 30-day popularity, with reason `history`."""
    bought = catalog.purchased.get(shopper_id)
    picks: list[Pick] = []
    if bought is not None and len(bought):
        mask = catalog.filter_mask(category=category, fulfillment=fulfillment) & catalog.repurchasable
        own = bought[mask[bought]]
        label = model.model_label
        if model.recommender is not None and len(own):
            ranked = model.recommender.recommend(
                [shopper_id],
                n=len(own),
                exclude_seen=False,
                candidates=set(catalog.product_ids[own].tolist()),
            )[0]
            positions = catalog.positions(np.array([item for item, _ in ranked], dtype=object))
            allowed = set(own.tolist())
            for pos, (_, score) in zip(positions.tolist(), ranked, strict=True):
                if pos in allowed and len(picks) < n:
                    picks.append(Pick(pos, float(score), reason=f"{label}:repeat"))
                    allowed.discard(pos)
        taken = {p.position for p in picks}
        rest = sorted(
            (p for p in own.tolist() if p not in taken), key=lambda p: -catalog.popularity["30d"][p]
        )
        for pos in rest[: max(n - len(picks), 0)]:
            picks.append(Pick(pos, float(catalog.popularity["30d"][pos]), reason="history"))
    return Page(
        picks=picks,
        model=model.model_label,
        model_version=model.version,
        fallback=model.recommender is None,
        fallback_reason=model.fallback_reason,
    )
