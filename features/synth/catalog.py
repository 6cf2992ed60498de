"""Categories, merchants (with their status history), brands and products, plus the choice-model arrays."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa

from commerce.search.lexicon import CATEGORY_ZH
from features.synth.model import FOREVER_US, N_LATENT, NEVER_US, CatalogModel
from features.synth.reference import BRAND_SYLLABLES, CATEGORY_TREE, ORIGINS, ROOT_ORIGIN_WEIGHTS
from features.synth.timeline import US_PER_DAY, Timeline

TS = pa.timestamp("us", tz="UTC")
PRICE = pa.decimal128(12, 2)
POPULARITY_EXPONENT = 0.9  # Zipf exponent of product popularity
TITLE_WORDS = (
    "Classic",
    "Pro",
    "Lite",
    "Plus",
    "Original",
    "Sensitive",
    "Max",
    "Mini",
    "Family Pack",
    "Gold",
)


@dataclass(frozen=True)
class Leaves:
    """The leaf categories in `truth/categories_order.json` order."""

    ids: list[str]
    names: list[str]
    root: np.ndarray  # root index per leaf
    repurchasable: np.ndarray
    median_price: np.ndarray
    price_sigma: np.ndarray
    cycle_days: np.ndarray


def leaves() -> Leaves:
    rows = [
        (f"{rid}-{j + 1:02d}", leaf[0], r, leaf[3], leaf[4], leaf[5], leaf[6])
        for r, (rid, _, _, children) in enumerate(CATEGORY_TREE)
        for j, leaf in enumerate(children)
    ]
    cols = list(zip(*rows, strict=True))
    return Leaves(
        ids=list(cols[0]),
        names=list(cols[1]),
        root=np.array(cols[2]),
        repurchasable=np.array(cols[3]),
        median_price=np.array(cols[4]),
        price_sigma=np.array(cols[5]),
        cycle_days=np.array(cols[6]),
    )


def categories_table() -> pa.Table:
    rows = []
    for rid, name, vat, children in CATEGORY_TREE:
        rows.append((rid, None, name, vat, 0.0, min(c[2] for c in children), any(c[3] for c in children)))
        for j, (lname, ctax, commission, rep, *_rest) in enumerate(children):
            rows.append((f"{rid}-{j + 1:02d}", rid, lname, vat, ctax, commission, rep))
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "category_id": pa.array(cols[0], pa.string()),
            "parent_id": pa.array(cols[1], pa.string()),
            "name": pa.array(cols[2], pa.string()),
            "vat_rate": pa.array(cols[3], pa.float64()),
            "consumption_tax_rate": pa.array(cols[4], pa.float64()),
            "commission_rate": pa.array(cols[5], pa.float64()),
            "repurchasable": pa.array(cols[6], pa.bool_()),
        }
    )


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names, seen = [], set()
    for i in range(n):
        k = 2 + (rng.random() < 0.4)
        name = "".join(BRAND_SYLLABLES[j] for j in rng.integers(0, len(BRAND_SYLLABLES), k)).capitalize()
        if name in seen:
            name = f"{name} {i}"
        seen.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class Catalog:
    """Everything the generator needs about the supply side."""

    leaves: Leaves
    categories: pa.Table
    merchants: pa.Table
    products: pa.Table
    brands: pa.Table  # truth/brands.parquet
    product_truth: pa.Table  # truth/products.parquet
    model: CatalogModel
    product_ids: pa.Array
    product_price: np.ndarray  # float CNY, for event values
    brand_names: list[str]


def build_catalog(
    rng: np.random.Generator, n_products: int, n_brands: int, n_merchants: int, timeline: Timeline
) -> Catalog:
    lv = leaves()
    n_roots = len(CATEGORY_TREE)
    n_leaves = len(lv.ids)
    if n_brands < n_roots or n_products < max(n_brands, n_leaves) or n_merchants < 5:
        raise ValueError(
            f"need n_brands >= {n_roots}, n_products >= max(n_brands, {n_leaves}) and n_merchants >= 5"
        )
    start = timeline.start_us
    # Brands: root category, origin, price level, latent taste vector, owning merchant.
    leaves_per_root = np.bincount(lv.root, minlength=n_roots)
    brand_root = np.concatenate(
        [
            np.arange(n_roots),
            rng.choice(n_roots, n_brands - n_roots, p=leaves_per_root / leaves_per_root.sum()),
        ]
    )
    origin_w = np.array([ROOT_ORIGIN_WEIGHTS[CATEGORY_TREE[r][0]] for r in range(n_roots)], dtype=float)
    u = rng.random(n_brands)
    brand_origin = (u[:, None] > np.cumsum(origin_w / origin_w.sum(1, keepdims=True), 1)[brand_root]).sum(1)
    brand_price_level = rng.normal(0.0, 0.35, n_brands)
    brand_latent = rng.normal(0.0, 1.0, (n_brands, N_LATENT))
    brand_names = _brand_names(rng, n_brands)
    # Merchant 0 is the platform's self-operated store; every other merchant owns at least one brand.
    brand_merchant = (
        np.concatenate(
            [np.arange(1, n_merchants), rng.integers(0, n_merchants, n_brands - (n_merchants - 1))]
        )[:n_brands]
        if n_brands >= n_merchants - 1
        else None
    )
    if brand_merchant is None:
        raise ValueError("need n_brands >= n_merchants - 1 so every merchant sells a brand")
    brand_merchant = rng.permutation(brand_merchant)

    # Merchant statuses: a few pending / rejected (never live), a few suspended mid-period.
    status = np.array(["approved"] * n_merchants, dtype=object)
    others = rng.permutation(np.arange(1, n_merchants))
    n_pending = max(1, round(0.05 * n_merchants))
    n_rejected = max(1, round(0.03 * n_merchants))
    n_suspended = max(1, round(0.04 * n_merchants))
    status[others[:n_pending]] = "pending"
    status[others[n_pending : n_pending + n_rejected]] = "rejected"
    status[others[n_pending + n_rejected : n_pending + n_rejected + n_suspended]] = "suspended"
    created = start - rng.integers(200, 4 * 365, n_merchants) * US_PER_DAY
    approved_at = created + rng.integers(3, 20, n_merchants) * US_PER_DAY
    late = np.isin(status, ["pending", "rejected"])
    created[late] = start + rng.integers(0, timeline.days - 5, late.sum()) * US_PER_DAY
    susp = status == "suspended"
    suspended_at = (
        start
        + rng.integers(20, timeline.days - 20, n_merchants) * US_PER_DAY
        + rng.integers(0, US_PER_DAY, n_merchants)
    )
    # status_changed_at: when the current status took effect.
    changed = np.where(susp, suspended_at, approved_at)
    changed = np.where(status == "pending", created, changed)
    changed = np.where(status == "rejected", created + 2 * US_PER_DAY, changed)
    live_from = np.where(late, NEVER_US, approved_at)[brand_merchant]  # per brand
    live_until = np.where(susp, suspended_at, FOREVER_US)[brand_merchant]

    first_brand = np.full(n_merchants, -1)
    for b in range(n_brands - 1, -1, -1):
        first_brand[brand_merchant[b]] = b
    merchant_country = np.array(ORIGINS)[brand_origin[np.maximum(first_brand, 0)]]
    merchant_ids = [f"M{i:05d}" for i in range(n_merchants)]
    merchant_names = [
        "CrossCart Global Direct" if i == 0 else f"{brand_names[first_brand[i]]} Overseas Flagship Store"
        for i in range(n_merchants)
    ]
    brands_of = [[] for _ in range(n_merchants)]
    for b in range(n_brands):
        brands_of[brand_merchant[b]].append(brand_names[b])
    licence = [
        f"CBEC-{c}-{n:08d}"
        for c, n in zip(merchant_country, rng.integers(0, 10**8, n_merchants), strict=True)
    ]
    merchants = pa.table(
        {
            "merchant_id": pa.array(merchant_ids, pa.string()),
            "name": pa.array(merchant_names, pa.string()),
            "country": pa.array(merchant_country.tolist(), pa.string()),
            "licence_no": pa.array(licence, pa.string()),
            "brands": pa.array(brands_of, pa.list_(pa.string())),
            "status": pa.array(status.tolist(), pa.string()),
            "created_at": pa.array(created, pa.int64()).cast(TS),
            "status_changed_at": pa.array(changed, pa.int64()).cast(TS),
        }
    )

    # Products: every leaf and every brand gets at least one; the rest follow brand size.
    root_leaves = [np.flatnonzero(lv.root == r) for r in range(n_roots)]
    brands_in_root = [np.flatnonzero(brand_root == r) for r in range(n_roots)]
    width = max(len(x) for x in root_leaves)
    padded = np.array([np.pad(x, (0, width - len(x)), mode="edge") for x in root_leaves])
    leaf_pref = np.zeros((n_brands, width))
    for b in range(n_brands):
        leaf_pref[b, : len(root_leaves[brand_root[b]])] = rng.dirichlet(
            np.full(len(root_leaves[brand_root[b]]), 0.8)
        )
    brand_size = rng.lognormal(0.0, 0.8, n_brands)
    p_brand = np.concatenate(
        [
            np.array([rng.choice(brands_in_root[lv.root[leaf]]) for leaf in range(n_leaves)]),
            np.arange(n_brands),
            rng.choice(n_brands, max(0, n_products - n_leaves - n_brands), p=brand_size / brand_size.sum()),
        ]
    )[:n_products]
    pick = (np.cumsum(leaf_pref, axis=1)[p_brand] < rng.random((n_products, 1)) * 0.999999).sum(axis=1)
    p_leaf = padded[brand_root[p_brand], np.minimum(pick, width - 1)]
    p_leaf[:n_leaves] = np.arange(n_leaves)[: min(n_leaves, n_products)]
    perm = rng.permutation(n_products)  # shuffle so ids carry no structure
    p_brand, p_leaf = p_brand[perm], p_leaf[perm]
    popularity = (1.0 + rng.permutation(n_products)) ** -POPULARITY_EXPONENT
    log_price = (
        np.log(lv.median_price[p_leaf])
        + brand_price_level[p_brand]
        + rng.normal(0.0, 1.0, n_products) * 0.6 * lv.price_sigma[p_leaf]
    )
    price = np.maximum(np.round(np.exp(log_price)) - 0.1, 9.9)
    rel_price = np.log(price / lv.median_price[p_leaf])
    p_merchant = brand_merchant[p_brand]
    bonded = rng.random(n_products) < 0.65
    stock = np.where(bonded, rng.integers(50, 3000, n_products), rng.integers(5, 400, n_products))
    p_created = np.where(
        late[p_merchant],
        created[p_merchant] + rng.integers(0, US_PER_DAY, n_products),
        np.maximum(approved_at[p_merchant], start - rng.integers(1, 700, n_products) * US_PER_DAY),
    )
    product_ids = pa.array([f"P{i:07d}" for i in range(n_products)], pa.string())
    # Bilingual, as cross-border listings are: brand, the Chinese product name, the English name.
    titles = [
        f"{brand_names[b]} {CATEGORY_ZH[lv.names[leaf]]} {lv.names[leaf]} {TITLE_WORDS[w]}"
        for b, leaf, w in zip(p_brand, p_leaf, rng.integers(0, len(TITLE_WORDS), n_products), strict=True)
    ]
    merchant_id_arr = pa.array(merchant_ids, pa.string())
    products = pa.table(
        {
            "product_id": product_ids,
            "sku": pa.array([f"{merchant_ids[m]}-{i:07d}" for i, m in enumerate(p_merchant)], pa.string()),
            "merchant_id": merchant_id_arr.take(pa.array(p_merchant)),
            "title": pa.array(titles, pa.string()),
            "category_id": pa.array(lv.ids, pa.string()).take(pa.array(p_leaf)),
            "brand": pa.array(brand_names, pa.string()).take(pa.array(p_brand)),
            "origin_country": pa.array(list(ORIGINS), pa.string()).take(pa.array(brand_origin[p_brand])),
            "price": pa.array([Decimal(f"{p:.2f}") for p in price], PRICE),
            "fulfillment": pa.array(np.where(bonded, "bonded", "direct_mail").tolist(), pa.string()),
            "self_operated": pa.array(p_merchant == 0, pa.bool_()),
            "stock": pa.array(stock.astype(np.int64), pa.int64()),
            "status": pa.array(
                np.where(status[p_merchant] == "approved", "listed", "delisted").tolist(), pa.string()
            ),
            "created_at": pa.array(p_created, pa.int64()).cast(TS),
        }
    )
    brands = pa.table(
        {
            "brand": pa.array(brand_names, pa.string()),
            "merchant_id": merchant_id_arr.take(pa.array(brand_merchant)),
            "root_category_id": pa.array([CATEGORY_TREE[r][0] for r in brand_root], pa.string()),
            "origin_country": pa.array(list(ORIGINS), pa.string()).take(pa.array(brand_origin)),
            "price_level": pa.array(brand_price_level, pa.float64()),
            "latent": pa.array(list(brand_latent.astype(np.float32)), pa.list_(pa.float32())),
            "live_from": pa.array(np.where(live_from == NEVER_US, None, live_from).tolist(), pa.int64()).cast(
                TS
            ),
            "live_until": pa.array(
                np.where(live_until == FOREVER_US, None, live_until).tolist(), pa.int64()
            ).cast(TS),
        }
    )
    product_truth = pa.table(
        {
            "product_id": product_ids,
            "brand": products["brand"],
            "popularity": pa.array(popularity, pa.float64()),
            "rel_price": pa.array(rel_price, pa.float64()),
        }
    )
    model = CatalogModel.build(
        n_leaves=n_leaves,
        n_origins=len(ORIGINS),
        brand_latent=brand_latent.astype(np.float32),
        brand_origin=brand_origin,
        brand_price_level=brand_price_level,
        brand_live_from=live_from,
        brand_live_until=live_until,
        product_brand=p_brand,
        product_leaf=p_leaf,
        product_popularity=popularity,
        product_rel_price=rel_price,
    )
    return Catalog(
        lv,
        categories_table(),
        merchants,
        products,
        brands,
        product_truth,
        model,
        product_ids,
        price,
        brand_names,
    )
