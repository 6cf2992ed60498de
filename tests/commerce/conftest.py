"""Fixtures for the commerce tests: a fresh schema on SQLite and PostgreSQL plus a tiny marketplace.

On SQLite both are copies of template files made once per session (per xdist worker): creating the
schema and seeding the marketplace cost about 0.2 s of CPU and seconds of disk syncs per test.
"""

from __future__ import annotations

import functools
import shutil
import sqlite3
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

import commerce.all_models  # noqa: F401  (complete metadata)
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.identity import Keyring, check_char
from commerce.logistics import Warehouse
from commerce.services import catalog, merchants, shoppers
from commerce.services.logistics import seed_default_partners

IDENTITY_KEY = "test-identity-key"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_id_number(seq: int) -> str:
    """A check-digit-valid synthetic resident ID number."""
    first17 = f"110101199001{seq:05d}"
    return first17 + check_char(first17)


@functools.cache
def _postgres_ddl() -> str:
    """The whole schema as one DDL script: one round trip per test instead of one per table and index."""
    dialect = postgresql.dialect()
    statements = []
    for table in Base.metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements += [str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes]
    return ";\n".join(statements)


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory) -> dict[str, str]:
    """SQLite files made once: "schema" (every table, no rows) and "market" (`seed_market`'s rows too)."""
    folder = tmp_path_factory.mktemp("commerce-templates")
    paths = {name: str(folder / f"{name}.db") for name in ("schema", "market")}
    for name, path in paths.items():
        eng = make_engine(f"sqlite:///{path}")
        Base.metadata.create_all(eng, checkfirst=False)
        if name == "market":
            seed_market(make_session_factory(eng))
        eng.dispose()  # the last connection's close checkpoints the WAL into the file
    return paths


@pytest.fixture
def engine(database_url, sqlite_templates):
    # PostgreSQL: enough pooled connections for the concurrency tests, few enough to share the server.
    extra = {"pool_size": 25, "max_overflow": 0, "pool_timeout": 60} if "postgresql" in database_url else {}
    if database_url.startswith("sqlite"):
        shutil.copy(sqlite_templates["schema"], make_url(database_url).database)
    eng = make_engine(database_url, **extra)
    if eng.dialect.name == "postgresql":
        with eng.begin() as conn:
            conn.exec_driver_sql(_postgres_ddl())
    yield eng
    eng.dispose()


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


def copy_seeded(engine, templates: dict, seed) -> None:
    """`seed`'s rows in `engine`'s fresh PostgreSQL schema, copied in one round trip from a schema `seed`
    filled once per session (`templates`: the `postgres_templates` fixture). Seeding through the services
    cost 0.1 s of an idle host per test and up to 0.5 s on the loaded one."""
    name = f"{seed.__module__}.{seed.__qualname__}"
    if name not in templates:
        schema = f"tpl_{uuid.uuid4().hex[:12]}"
        url = engine.url.set(query={"options": f"-csearch_path={schema}"})
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        template = make_engine(url.render_as_string(hide_password=False))
        try:
            with template.begin() as conn:
                conn.exec_driver_sql(_postgres_ddl())
            seed(make_session_factory(template))
            with template.connect() as conn:
                tables = set(
                    conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
                    ).scalars()
                )
                sequences = list(
                    conn.execute(
                        text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s"), {"s": schema}
                    ).scalars()
                )
        finally:
            template.dispose()
        assert tables == set(Base.metadata.tables), tables ^ set(Base.metadata.tables)  # every row copied
        templates[name] = (schema, sequences)
    schema, sequences = templates[name]
    copies = [
        f'INSERT INTO "{table.name}" OVERRIDING SYSTEM VALUE SELECT * FROM "{schema}"."{table.name}"'
        for table in Base.metadata.sorted_tables
    ]
    copies += [
        f'SELECT setval(\'"{seq}"\', last_value, is_called) FROM "{schema}"."{seq}"' for seq in sequences
    ]
    with engine.begin() as conn:
        conn.exec_driver_sql(";\n".join(copies))


@pytest.fixture
def market(factory, engine, sqlite_templates, postgres_templates):
    """`seed_market`'s marketplace in this test's database: on SQLite the template's pages copied in, on
    PostgreSQL the template schema's rows (`copy_seeded`)."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            with sqlite3.connect(sqlite_templates["market"]) as template:
                template.backup(raw.driver_connection)
        finally:
            raw.close()
    else:
        copy_seeded(engine, postgres_templates, seed_market)
    return factory


def seed_market(factory) -> None:
    """Category tree (cosmetics pay consumption tax), approved and suspended merchants, products, shoppers."""
    with transaction(factory) as s:
        seed_default_partners(s)
        catalog.create_category(s, catalog.CategoryInput("root", "All"))
        catalog.create_category(s, catalog.CategoryInput("beauty", "Beauty", parent_id="root"))
        catalog.create_category(
            s,
            catalog.CategoryInput(
                "cosmetics",
                "High-end cosmetics",
                parent_id="beauty",
                consumption_tax_rate=Decimal("0.15"),
                commission_rate=Decimal("0.08"),
            ),
        )
        catalog.create_category(
            s, catalog.CategoryInput("food", "Food", parent_id="root", repurchasable=True)
        )
        for mid, brand in (("m_ok", "Acme"), ("m_sus", "Shady")):
            merchants.apply(
                s, merchants.MerchantApplication(mid, "JP", f"LIC-{mid}", [brand], merchant_id=mid)
            )
            merchants.approve(s, mid)
        merchants.suspend(s, "m_sus", "counterfeit complaints")
        s.add(Warehouse(warehouse_id="HZ-1", name="Platform depot", mode="bonded"))  # no owner: both stock it
        products = [
            ("p_cream", "m_ok", "cosmetics", "Acme", "300.00", "bonded", False, None, {"HZ-1": 5}),
            ("p_tea", "m_ok", "food", "Acme", "99.90", "bonded", False, None, {"HZ-1": 100, "HZ-2": 100}),
            ("p_watch", "m_ok", "food", "Acme", "6000.00", "bonded", False, None, {"HZ-1": 3}),
            ("p_self", "m_ok", "food", "Acme", "200.00", "bonded", True, "120.00", {"HZ-1": 50}),
            ("p_mail", "m_ok", "food", "Acme", "50.00", "direct_mail", False, None, {"JP-1": 10}),
            ("p_bad", "m_sus", "food", "Shady", "10.00", "bonded", False, None, {"HZ-1": 10}),
        ]
        for pid, mid, cat, brand, price, mode, self_op, cost, stock in products:
            catalog.create_product(
                s,
                catalog.ProductInput(
                    sku=f"SKU-{pid}",
                    merchant_id=mid,
                    title=pid,
                    category_id=cat,
                    brand=brand,
                    origin_country="JP",
                    price=price,
                    fulfillment=mode,
                    self_operated=self_op,
                    cost_price=cost,
                    stock=stock,
                    product_id=pid,
                ),
            )
        for i in range(3):
            shoppers.create_shopper(s, f"s{i}", "Zhejiang")
            shoppers.register_identity(
                s, f"s{i}", f"Shopper {i}", make_id_number(i), keyring=Keyring(IDENTITY_KEY)
            )
