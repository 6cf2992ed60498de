"""`load_marketplace` on a tiny marketplace written here per docs/data-contracts.md: loads, is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from commerce.catalog import Product, Stock
from commerce.coupons import Coupon, CouponGrant
from commerce.errors import ValidationError
from commerce.events import BehaviorEvent
from commerce.identity import id_digest
from commerce.importer import load_marketplace
from commerce.services.catalog import sellable_product_ids
from commerce.shoppers import ShopperIdentity
from tests.commerce.conftest import make_id_number

T0 = datetime(2025, 8, 1, tzinfo=UTC)
KEY = "import-key"


def write_market(root, *, bad_id=False):
    def write(name, rows, schema=None):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / name)

    root.mkdir(parents=True, exist_ok=True)
    write(
        "categories.parquet",
        [
            dict(
                category_id="C1",
                parent_id=None,
                name="Beauty",
                vat_rate=0.13,
                consumption_tax_rate=0.0,
                commission_rate=0.05,
                repurchasable=True,
            ),
            dict(
                category_id="C1-1",
                parent_id="C1",
                name="Perfume",
                vat_rate=0.13,
                consumption_tax_rate=0.15,
                commission_rate=0.08,
                repurchasable=False,
            ),
        ],
    )
    write(
        "merchants.parquet",
        [
            dict(
                merchant_id="M0",
                name="Direct",
                country="FR",
                licence_no="L0",
                brands=[],
                status="approved",
                created_at=T0,
            ),
            dict(
                merchant_id="M1",
                name="Maison",
                country="FR",
                licence_no="L1",
                brands=["Fleur"],
                status="suspended",
                created_at=T0,
            ),
        ],
    )
    price = pa.decimal128(12, 2)
    products_schema = pa.schema(
        [
            ("product_id", pa.string()),
            ("sku", pa.string()),
            ("merchant_id", pa.string()),
            ("title", pa.string()),
            ("category_id", pa.string()),
            ("brand", pa.string()),
            ("origin_country", pa.string()),
            ("price", price),
            ("fulfillment", pa.string()),
            ("self_operated", pa.bool_()),
            ("stock", pa.int64()),
            ("status", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    write(
        "products.parquet",
        [
            dict(
                product_id="P0",
                sku="S0",
                merchant_id="M0",
                title="Eau",
                category_id="C1-1",
                brand="Fleur",
                origin_country="FR",
                price=Decimal("880.00"),
                fulfillment="bonded",
                self_operated=True,
                stock=7,
                status="listed",
                created_at=T0,
            ),
            dict(
                product_id="P1",
                sku="S1",
                merchant_id="M1",
                title="Eau 2",
                category_id="C1-1",
                brand="Fleur",
                origin_country="FR",
                price=Decimal("99.50"),
                fulfillment="direct_mail",
                self_operated=False,
                stock=3,
                status="listed",
                created_at=T0,
            ),
        ],
        products_schema,
    )
    write(
        "shoppers.parquet",
        [dict(shopper_id=f"U{i}", region="Beijing", segment="student", created_at=T0) for i in range(3)],
    )
    ids = [make_id_number(i) for i in range(3)]
    if bad_id:
        ids[1] = ids[1][:-1] + ("0" if ids[1][-1] != "0" else "1")
    write(
        "identities.parquet",
        [dict(shopper_id=f"U{i}", real_name=f"Name{i}", id_number=ids[i]) for i in range(3)],
    )
    write(
        "seasons.parquet",
        [dict(season_id="D11", name="Double 11", start=T0, end=T0 + timedelta(days=10), discount=0.15)],
    )
    write(
        "campaigns.parquet",
        [
            dict(
                campaign_id="K1",
                name="Spring",
                channel="email",
                start=T0,
                end=T0 + timedelta(days=7),
                control_share=0.4,
            )
        ],
    )
    coupon_schema = pa.schema(
        [
            ("coupon_id", pa.string()),
            ("campaign_id", pa.string()),
            ("kind", pa.string()),
            ("value", price),
            ("cap", price),
            ("min_spend", price),
            ("scope_type", pa.string()),
            ("scope_id", pa.string()),
        ]
    )
    write(
        "coupons.parquet",
        [
            dict(
                coupon_id="CP1",
                campaign_id="K1",
                kind="percent_off",
                value=Decimal("0.15"),
                cap=Decimal("60"),
                min_spend=Decimal("0"),
                scope_type="category",
                scope_id="C1",
            ),
        ],
        coupon_schema,
    )
    (root / "events").mkdir(exist_ok=True)
    ev = dict(
        product_id="P0", quantity=1, value=0.0, session_id="x", campaign_id=None, coupon_id=None, query=None
    )
    events = [
        {**ev, "event_id": "E1", "ts": T0, "shopper_id": "U0", "event_type": "view"},
        {**ev, "event_id": "E2", "ts": T0, "shopper_id": "U0", "event_type": "purchase", "value": 880.0},
        {
            **ev,
            "event_id": "E3",
            "ts": T0,
            "shopper_id": "U1",
            "event_type": "coupon_grant",
            "product_id": None,
            "quantity": 0,
            "campaign_id": "K1",
            "coupon_id": "CP1",
        },
        {
            **ev,
            "event_id": "E4",
            "ts": T0,
            "shopper_id": "U2",
            "event_type": "search",
            "product_id": None,
            "query": "perfume",
        },
    ]
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("shopper_id", pa.string()),
            ("product_id", pa.string()),
            ("event_type", pa.string()),
            ("quantity", pa.int32()),
            ("value", pa.float64()),
            ("session_id", pa.string()),
            ("campaign_id", pa.string()),
            ("coupon_id", pa.string()),
            ("query", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(events[:2], schema), root / "events" / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(events[2:], schema), root / "events" / "part-00001.parquet")


def _counts(factory):
    with factory() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (Product, Stock, ShopperIdentity, Coupon, CouponGrant, BehaviorEvent)
        }


def test_load_marketplace_is_complete_and_idempotent(factory, tmp_path):
    write_market(tmp_path / "m")
    stats = load_marketplace(factory, tmp_path / "m", identity_key=KEY)  # default: every event
    assert stats.rows["events"] == 4 and stats.rows["coupon_grants"] == 1
    first = _counts(factory)
    assert first == {
        "products": 2,
        "stock": 2,
        "shopper_identities": 3,
        "coupons": 1,
        "coupon_grants": 1,
        "events": 4,
    }
    load_marketplace(factory, tmp_path / "m", identity_key=KEY)
    assert _counts(factory) == first
    with factory() as s:
        p0 = s.get(Product, "P0")
        assert p0.price == Decimal("880.00") and p0.cost_price == Decimal("616.00")  # 70% default cost
        assert p0.category.tariff_rate == Decimal("0.1000")
        assert sellable_product_ids(s) == {"P0"}  # M1 is suspended
        ident = s.get(ShopperIdentity, "U1")
        assert (
            ident.id_digest == id_digest(make_id_number(1), KEY) and ident.id_last4 == make_id_number(1)[-4:]
        )
        coupon = s.get(Coupon, "CP1")
        assert (
            coupon.requires_grant
            and coupon.value == Decimal("0.15")
            and coupon.ends_at == T0 + timedelta(days=7)
        )
        grant = s.scalar(select(CouponGrant))
        assert (grant.shopper_id, grant.campaign_id, grant.channel) == ("U1", "K1", "email")
        assert s.get(BehaviorEvent, "E4").query == "perfume"


def test_purchases_only_and_bad_identity(factory, tmp_path):
    write_market(tmp_path / "m")
    load_marketplace(factory, tmp_path / "m", identity_key=KEY, events="purchases")  # and coupon events
    with factory() as s:
        assert sorted(s.scalars(select(BehaviorEvent.event_id))) == ["E2", "E3"]
    write_market(tmp_path / "bad", bad_id=True)
    before = _counts(factory)
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "bad", identity_key=KEY)
    assert err.value.code == "invalid_id_number" and make_id_number(1)[:-1] not in err.value.message
    assert _counts(factory) == before
    with pytest.raises(ValidationError):
        load_marketplace(factory, tmp_path / "missing", identity_key=KEY)


def test_dangling_references_are_refused_and_load_nothing(factory, tmp_path):
    write_market(tmp_path / "m")
    merchants = tmp_path / "m" / "merchants.parquet"
    pq.write_table(pq.read_table(merchants).slice(0, 1), merchants)  # drop M1, which sells P1
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "m", identity_key=KEY)
    assert err.value.code == "unknown_reference" and "M1" in err.value.message
    assert set(_counts(factory).values()) == {0}
