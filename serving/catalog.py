"""The catalog as the request path sees it: an immutable snapshot of numpy arrays, rebuilt periodically.

Eligibility (listed, in stock, merchant approved and not suspended), popularity and sales counters, past
purchases and sponsored slots are computed once per refresh, so a recommendation request does array lookups
instead of database scans. A refresh builds a new snapshot and swaps the reference: readers never see a
half-built one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import repeat

import numpy as np
import pandas as pd

from commerce.services._util import stored_form

WINDOWS = ("1d", "7d", "30d", "all")
WINDOW_DAYS = {"1d": 1, "7d": 7, "30d": 30}  # "all": every event up to the end, no start
# Weight of each behaviour in the popularity score: buying says more than looking.
POPULARITY_WEIGHTS = {"view": 1.0, "favorite": 2.0, "cart": 3.0, "purchase": 5.0}


@dataclass(frozen=True, eq=False)
class CatalogSnapshot:
    """Column arrays aligned on `product_ids` (position i is one product)."""

    product_ids: np.ndarray
    titles: np.ndarray
    merchant_ids: np.ndarray
    category_ids: np.ndarray
    origins: np.ndarray
    prices: np.ndarray  # Decimal objects: money stays exact up to the response
    bonded: np.ndarray  # bool: fulfilled from a bonded warehouse (fast delivery)
    eligible: np.ndarray  # bool: may be shown at all
    public: np.ndarray  # bool: listed from an approved merchant, in stock or not (its page is public)
    repurchasable: np.ndarray  # bool: category allows recommending it again after a purchase
    sales: dict[str, np.ndarray]  # window -> units sold
    popularity: dict[str, np.ndarray]  # window -> distinct shoppers per behaviour, weighted
    purchased: dict[str, np.ndarray]  # shopper -> product positions bought (most active shoppers first)
    sponsored: np.ndarray  # product positions with an active paid slot, best paying first
    category_parent: dict[str, str | None]
    built_at: float = field(default_factory=time.time)
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))  # where the windows end
    index: dict[str, int] = field(init=False, repr=False)
    popular_order: np.ndarray = field(init=False, repr=False)  # eligible positions, most popular first
    _masks: dict = field(init=False, repr=False)
    _search_text: np.ndarray = field(init=False, repr=False)
    encoded_cards: dict[int, bytes] = field(init=False, repr=False)  # position -> JSON, filled on use
    # Plain-list copies for per-pick lookups in page composition (list indexing beats numpy scalars).
    merchant_list: list[str] = field(init=False, repr=False)
    merchant_set: frozenset[str] = field(init=False, repr=False)
    category_list: list[str] = field(init=False, repr=False)
    sponsored_list: list[tuple[int, str]] = field(init=False, repr=False)  # (position, category)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {p: i for i, p in enumerate(self.product_ids.tolist())})
        score = self.popularity["30d"] + 1e-6 * self.popularity["all"]
        order = np.argsort(-score, kind="stable")
        object.__setattr__(self, "popular_order", order[self.eligible[order]])
        object.__setattr__(self, "_masks", {})
        object.__setattr__(self, "encoded_cards", {})
        object.__setattr__(self, "merchant_list", self.merchant_ids.tolist())
        object.__setattr__(self, "merchant_set", frozenset(self.merchant_list))
        object.__setattr__(self, "category_list", self.category_ids.tolist())
        sponsored = self.sponsored.tolist()
        object.__setattr__(self, "sponsored_list", [(p, self.category_list[p]) for p in sponsored])
        object.__setattr__(self, "_search_text", np.char.lower(self.titles.astype(str)))

    def __len__(self) -> int:
        return len(self.product_ids)

    def positions(self, product_ids: np.ndarray) -> np.ndarray:
        """Catalog positions of `product_ids`, -1 for ids not in the catalog."""
        found = map(self.index.get, product_ids.tolist(), repeat(-1))
        return np.fromiter(found, dtype=np.intp, count=len(product_ids))

    def stored_category(self, category_id: str) -> str:
        """The category `category_id` names, read as an id in a URL is (`stored_form`): `ｂｅａｕｔｙ` and
        `beauty ` are `beauty`. Every category filter of the in-memory lists passes through it."""
        return stored_form(category_id, self.category_parent.__contains__)

    def has_merchant(self, merchant_id: str) -> bool:
        """Whether a product of the catalog is `merchant_id`'s (asked only of an id not in normal form)."""
        return merchant_id in self.merchant_set

    def public_context(self, product_ids: list[str]) -> list[str]:
        """The `product_ids` a client names as a page's context (a product page, a cart, a visit's clicks)
        that are public. A hidden one (a pending merchant's, a delisted one) drives no page: a page it
        seeded told that it exists, what it is like (its category first) and what is bought with it. Each
        id is read as an id in a URL is (`stored_form`: `ｐ01` and `p01 ` are p01)."""
        named = (stored_form(p, self.index.__contains__) for p in product_ids)
        return [p for p in named if (pos := self.index.get(p)) is not None and self.public[pos]]

    def category_mask(self, category_id: str) -> np.ndarray:
        """Products in `category_id` or any of its descendants (cached per snapshot)."""
        key = ("category", category_id)
        mask = self._masks.get(key)
        if mask is None:
            inside = {category_id}
            for cat in self.category_parent:
                chain, node = [], cat
                while node is not None and node not in inside and len(chain) < 64:
                    chain.append(node)
                    node = self.category_parent.get(node)
                if node in inside:
                    inside.update(chain)
            mask = np.isin(self.category_ids, list(inside))
            self._masks[key] = mask
        return mask

    def filter_mask(
        self, *, category: str | None = None, fulfillment: str | None = None, origin: str | None = None
    ) -> np.ndarray:
        """Eligible products passing the request's filters (cached per filter combination)."""
        category = None if category is None else self.stored_category(category)
        key = ("filter", category, fulfillment, origin)
        mask = self._masks.get(key)
        if mask is None:
            mask = self.eligible.copy()
            if category is not None:
                mask &= self.category_mask(category)
            if fulfillment == "bonded":
                mask &= self.bonded
            elif fulfillment == "direct_mail":
                mask &= ~self.bonded
            if origin is not None:
                mask &= self.origins == origin
            self._masks[key] = mask
        return mask

    def popular(self, mask: np.ndarray, chunk: int = 256) -> Iterator[int]:
        """Positions passing `mask`, most popular first, scanned in chunks so a page stops early."""
        order = self.popular_order
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            yield from part[mask[part]].tolist()

    def window_bounds(self, window: str) -> tuple[datetime | None, datetime, int | None]:
        """(start, end, days) of a ranking window: it ends at the snapshot's `as_of` (the reload that
        counted it); `all` has no start and no length."""
        days = WINDOW_DAYS.get(window)
        return (None if days is None else self.as_of - timedelta(days=days)), self.as_of, days

    def ranking(
        self, by: str, window: str, limit: int, offset: int = 0, **filters: str | None
    ) -> list[tuple[int, float]]:
        """Top products by sales or popularity over `window`, restricted by filters."""
        values = (self.sales if by == "sales" else self.popularity)[window]
        mask = self.filter_mask(**filters) & (values > 0)
        positions = np.flatnonzero(mask)
        order = positions[np.argsort(-values[positions], kind="stable")][offset : offset + limit]
        return [(int(i), float(values[i])) for i in order]

    def search(
        self,
        *,
        q: str | None = None,
        merchant_id: str | None = None,
        sort: str = "popularity",
        limit: int = 20,
        offset: int = 0,
        **filters: str | None,
    ) -> tuple[np.ndarray, int]:
        """A page of sellable products matching a title substring and filters, and the total match count."""
        mask = self.filter_mask(**filters)
        if merchant_id is not None:
            mask = mask & (self.merchant_ids == merchant_id)
        if q:
            mask = mask & (np.char.find(self._search_text, q.lower()) >= 0)
        if sort == "popularity":
            order = self.popular_order[mask[self.popular_order]]
        else:
            positions = np.flatnonzero(mask)
            price = np.array([float(p) for p in self.prices[positions]])
            order = positions[np.argsort(price if sort == "price_asc" else -price, kind="stable")]
        return order[offset : offset + limit], len(order)

    @classmethod
    def from_frames(
        cls,
        products: pd.DataFrame,
        categories: pd.DataFrame,
        activity: pd.DataFrame | None = None,
        purchases: pd.DataFrame | None = None,
        sponsored: Sequence[str] = (),
        as_of: datetime | None = None,
    ) -> CatalogSnapshot:
        """Build from plain tables; `as_of` is when the activity windows end (default: now).

        - products: product_id, title, merchant_id, category_id, origin_country, price (Decimal),
          fulfillment, sellable (bool: listed, merchant approved, units available), public (bool:
          listed, merchant approved)
        - categories: category_id, parent_id, repurchasable
        - activity: window (one of WINDOWS), product_id, event_type, count (distinct shoppers),
          quantity
        - purchases: shopper_id, product_id
        - sponsored: product ids with an active paid slot, best paying first
        """
        products = products.reset_index(drop=True)
        n = len(products)
        ids = products["product_id"].astype(str).to_numpy(dtype=object)
        index = {p: i for i, p in enumerate(ids.tolist())}
        repurchasable_by_cat = dict(
            zip(categories["category_id"].astype(str), categories["repurchasable"].astype(bool), strict=True)
        )
        parent = {
            str(c): (None if p is None or (isinstance(p, float) and np.isnan(p)) else str(p))
            for c, p in zip(categories["category_id"], categories["parent_id"], strict=True)
        }
        cat_ids = products["category_id"].astype(str).to_numpy(dtype=object)
        sales = {w: np.zeros(n) for w in WINDOWS}
        popularity = {w: np.zeros(n) for w in WINDOWS}
        if activity is not None and len(activity):
            act = activity[activity["product_id"].isin(index)]
            pos = act["product_id"].map(index).to_numpy()
            weight = act["event_type"].map(POPULARITY_WEIGHTS).fillna(0.0).to_numpy()
            is_sale = (act["event_type"] == "purchase").to_numpy()
            for w in WINDOWS:
                sel = (act["window"] == w).to_numpy()
                np.add.at(popularity[w], pos[sel], weight[sel] * act["count"].to_numpy()[sel])
                np.add.at(sales[w], pos[sel & is_sale], act["quantity"].to_numpy()[sel & is_sale])
        bought: dict[str, np.ndarray] = {}
        if purchases is not None and len(purchases):
            pur = purchases[purchases["product_id"].isin(index)]
            pur = pur.assign(pos=pur["product_id"].map(index))
            groups = {
                str(s): np.unique(g["pos"].to_numpy()) for s, g in pur.groupby("shopper_id", sort=False)
            }
            bought = dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))
        return cls(
            product_ids=ids,
            titles=products["title"].astype(str).to_numpy(dtype=object),
            merchant_ids=products["merchant_id"].astype(str).to_numpy(dtype=object),
            category_ids=cat_ids,
            origins=products["origin_country"].astype(str).to_numpy(dtype=object),
            prices=np.array([Decimal(str(p)) for p in products["price"]], dtype=object),
            bonded=(products["fulfillment"] == "bonded").to_numpy(dtype=bool),
            eligible=products["sellable"].to_numpy(dtype=bool),
            public=products["public"].to_numpy(dtype=bool),
            repurchasable=np.array([repurchasable_by_cat.get(c, False) for c in cat_ids], dtype=bool),
            sales=sales,
            popularity=popularity,
            purchased=bought,
            sponsored=np.array([index[p] for p in sponsored if p in index], dtype=np.int64),
            category_parent=parent,
            as_of=as_of or datetime.now(UTC),
        )
