"""A small bilingual shop on SQLite and PostgreSQL (the commerce fixtures' schema) for search tests, the
app over it (`api`) and keys for its roles. On SQLite the shop is a copy of a template seeded once per
process, on PostgreSQL the rows of a schema seeded once (as the commerce fixtures' market): seeding it
cost 0.1-0.5 s per test."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient

from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.logistics import Warehouse
from commerce.search.documents import rebuild
from commerce.search.index import Fts5Index, PostgresIndex, SearchIndex
from commerce.search.memory import MemoryIndex
from commerce.services import catalog, merchants, shoppers
from commerce.services.access import create_api_key
from commerce.services.logistics import seed_default_partners
from crosscart.settings import Settings
from serving.app import create_app
from tests.commerce.conftest import copy_seeded, engine, factory, sqlite_templates  # noqa: F401
from tests.serving.conftest import ScriptedSource, TinyRecommender

CATEGORIES = [
    ("C01", "Beauty & Skincare", None),
    ("C01-01", "Face Serum", "C01"),
    ("C01-02", "Face Cream", "C01"),
    ("C01-03", "Sunscreen", "C01"),
    ("C05", "Fashion & Accessories", None),
    ("C05-03", "Sneakers", "C05"),
    ("C06", "Electronics", None),
    ("C06-01", "Headphones", "C06"),
]
MERCHANTS = [
    ("M1", "JP", ["Karimi", "Sorin"]),
    ("M2", "DE", ["Velmar", "Nikolas"]),
    ("M3", "FR", ["Lunette"]),
]
# product, merchant, title, category, brand, origin, price
PRODUCTS = [
    ("P1", "M1", "Karimi 保湿面霜 Face Cream Classic", "C01-02", "Karimi", "JP", "320.00"),
    ("P2", "M1", "Sorin 精华液 Face Serum Pro", "C01-01", "Sorin", "KR", "380.00"),
    ("P3", "M2", "Velmar 降噪耳机 Headphones Max", "C06-01", "Velmar", "DE", "1200.00"),
    ("P4", "M1", "Karimi 防晒霜 Sunscreen Lite", "C01-03", "Karimi", "JP", "160.00"),
    ("P5", "M2", "Nikolas 运动鞋 Sneakers Running", "C05-03", "Nikolas", "US", "900.00"),
    ("P6", "M3", "Lunette 晚霜 Night Cream Gold", "C01-02", "Lunette", "FR", "560.00"),
    ("P7", "M2", "Velmar Wireless Earbuds Mini", "C06-01", "Velmar", "DE", "700.00"),
]


_SHOP_TEMPLATE: list[str] = []  # the SQLite template's path, once this process has made it


@pytest.fixture
def shop(factory, engine, tmp_path_factory, postgres_templates):  # noqa: F811
    """`seed_shop`'s rows in this test's database: on SQLite a template's pages copied in, on PostgreSQL
    a template schema's rows (`copy_seeded`)."""
    if engine.dialect.name != "sqlite":
        copy_seeded(engine, postgres_templates, seed_shop)
        return factory
    if not _SHOP_TEMPLATE:
        path = str(tmp_path_factory.mktemp("search-shop") / "shop.db")
        template = make_engine(f"sqlite:///{path}")
        Base.metadata.create_all(template, checkfirst=False)
        seed_shop(make_session_factory(template))
        template.dispose()  # the last connection's close checkpoints the WAL into the file
        _SHOP_TEMPLATE.append(path)
    raw, source = engine.raw_connection(), sqlite3.connect(_SHOP_TEMPLATE[0])
    try:
        source.backup(raw.driver_connection)
    finally:
        source.close()
        raw.close()
    return factory


def seed_shop(sessions) -> None:
    """Three merchants' bilingual products over a small category tree, stocked in the platform depot."""
    with transaction(sessions) as s:
        seed_default_partners(s)
        for cid, name, parent in CATEGORIES:
            catalog.create_category(s, catalog.CategoryInput(cid, name, parent_id=parent))
        for mid, country, brands in MERCHANTS:
            merchants.apply(
                s, merchants.MerchantApplication(mid, country, f"LIC-{mid}", brands, merchant_id=mid)
            )
            merchants.approve(s, mid)
        s.add(Warehouse(warehouse_id="HZ-1", name="Platform depot", mode="bonded"))  # no owner: all stock it
        for pid, mid, title, cat, brand, origin, price in PRODUCTS:
            catalog.create_product(
                s,
                catalog.ProductInput(
                    sku=f"SKU-{pid}",
                    merchant_id=mid,
                    title=title,
                    category_id=cat,
                    brand=brand,
                    origin_country=origin,
                    price=price,
                    fulfillment="bonded",
                    stock={"HZ-1": 20},
                    product_id=pid,
                ),
            )
        for i in range(3):
            shoppers.create_shopper(s, f"s{i}", "Zhejiang")


def search_app(shop, settings: Settings, **kwargs):
    """The app over the search shop with a one-version recommender and no uplift model: what every search
    test serves (`kwargs` go to `create_app`, e.g. `start_background`, `catalog_refresh_seconds`)."""
    source = ScriptedSource(versions={"1": TinyRecommender({}, set())}, alias="1")
    return create_app(
        settings, session_factory=shop, model_source=source, uplift_source=ScriptedSource(), **kwargs
    )


@pytest.fixture
def api(shop, engine, tmp_path):  # noqa: F811
    backend = "postgresql" if engine.dialect.name == "postgresql" else "memory"  # memory: the default
    settings = Settings(
        data_dir=tmp_path,
        rate_limit_per_minute=10_000,
        rate_limit_anonymous_per_minute=10_000,
        merchant_applications_per_hour=10_000,
        search_backend=backend,
        ads_token_secret="api-test-secret",
    )
    with TestClient(search_app(shop, settings, start_background=False)) as client:
        yield client


@pytest.fixture(params=["database", "memory"])
def index(request, shop, engine) -> SearchIndex:  # noqa: F811
    """The shop's documents in an index of each kind: the database's own (FTS5 or PostgreSQL) and memory."""
    if request.param == "memory":
        idx: SearchIndex = MemoryIndex()
    else:
        idx = Fts5Index() if engine.dialect.name == "sqlite" else PostgresIndex(engine)
    with shop() as session:
        rebuild(idx, session)
    return idx


@pytest.fixture
def keys(shop):
    out = {}
    with transaction(shop) as s:
        out["storefront"] = create_api_key(s, "storefront")[1]
        out["shopper"] = create_api_key(s, "shopper", shopper_id="s1")[1]
        out["m1"] = create_api_key(s, "merchant", merchant_id="M1")[1]
        out["m2"] = create_api_key(s, "merchant", merchant_id="M2")[1]
        out["admin"] = create_api_key(s, "admin")[1]
    return out
