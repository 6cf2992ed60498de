"""Features of (query, product, shopper) for the search ranker: one definition for training on search logs
and for serving, so the model sees the same columns in both places.

Query-product: BM25 overall and per field, its rank among the matches, brand / category words of the
query matching the product, price (log, and relative to the matches), popularity, freshness.
Shopper: share of the shopper's past purchases in the product's category, origin and brand, distance of the
price from the shopper's usual price level, and how much history there is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from commerce.search.index import FIELDS, Hit
from commerce.search.query import ParsedQuery

FEATURES = (
    "bm25",
    *(f"bm25_{f}" for f in FIELDS),
    "bm25_rank",
    "brand_match",
    "category_match",
    "log_price",
    "price_vs_matches",
    "popularity",
    "age_days",
    "shopper_category_share",
    "shopper_origin_share",
    "shopper_brand_share",
    "shopper_price_gap",
    "shopper_history",
)


@dataclass(frozen=True)
class ShopperProfile:
    """What a shopper's past purchases say: shares by category, origin and brand, mean log price."""

    n: int = 0
    category_share: dict[str, float] = field(default_factory=dict)
    origin_share: dict[str, float] = field(default_factory=dict)
    brand_share: dict[str, float] = field(default_factory=dict)
    mean_log_price: float = 0.0

    @classmethod
    def from_purchases(cls, rows: Iterable[tuple[str, str, float, str]]) -> ShopperProfile:
        """`rows`: (category_id, origin, price, brand) per purchased product."""
        rows = list(rows)
        if not rows:
            return cls()
        n = len(rows)
        cats = Counter(r[0] for r in rows)
        origins = Counter(r[1] for r in rows)
        brands = Counter(r[3] for r in rows)
        return cls(
            n=n,
            category_share={k: v / n for k, v in cats.items()},
            origin_share={k: v / n for k, v in origins.items()},
            brand_share={k: v / n for k, v in brands.items()},
            mean_log_price=float(np.mean([np.log1p(max(r[2], 0.0)) for r in rows])),
        )


EMPTY_PROFILE = ShopperProfile()


def search_features(
    hits: Sequence[Hit],
    parsed: ParsedQuery,
    *,
    popularity: Sequence[float],
    shopper: ShopperProfile = EMPTY_PROFILE,
    now: datetime | None = None,
) -> np.ndarray:
    """(len(hits), len(FEATURES)) float32 matrix; `hits` in BM25 order with field scores."""
    n = len(hits)
    out = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return out
    price = np.array([np.log1p(float(h.document.price)) for h in hits])
    out[:, 0] = [h.score for h in hits]
    for j, f in enumerate(FIELDS):
        out[:, 1 + j] = [h.field_scores.get(f, 0.0) for h in hits]
    col = 1 + len(FIELDS)
    out[:, col] = np.arange(n)
    out[:, col + 1] = [parsed.brand is not None and h.document.brand == parsed.brand for h in hits]
    out[:, col + 2] = [
        parsed.category_id is not None and h.document.category_id == parsed.category_id for h in hits
    ]
    out[:, col + 3] = price
    out[:, col + 4] = price - np.median(price)
    out[:, col + 5] = np.log1p(np.asarray(popularity, dtype=np.float64))
    if now is not None:
        ages = []
        for h in hits:
            created = h.document.created_at
            ages.append((now - datetime.fromisoformat(created)).total_seconds() / 86400 if created else 0.0)
        out[:, col + 6] = ages
    if shopper.n:
        out[:, col + 7] = [shopper.category_share.get(h.document.category_id, 0.0) for h in hits]
        out[:, col + 8] = [shopper.origin_share.get(h.document.origin, 0.0) for h in hits]
        out[:, col + 9] = [shopper.brand_share.get(h.document.brand, 0.0) for h in hits]
        out[:, col + 10] = np.abs(price - shopper.mean_log_price)
        out[:, col + 11] = np.log1p(shopper.n)
    return out
