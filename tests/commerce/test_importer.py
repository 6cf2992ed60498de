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
from commerce.events import BehaviorEvent, events_arrow_schema
from commerce.identity import Keyring, id_digest
from commerce.importer import load_marketplace
from commerce.inputs import BadInputFile
from commerce.orders import Order
from commerce.services.catalog import sellable_product_ids
from commerce.shoppers import ShopperIdentity
from tests.commerce.conftest import make_id_number

T0 = datetime(2025, 8, 1, tzinfo=UTC)
KEY = "import-key"


def write_market(root, *, bad_id=False, sku1="S1", merchant1="M1"):
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
                sku=sku1,
                merchant_id=merchant1,
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
    schema = events_arrow_schema()
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
    stats = load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))  # default: every event
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
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
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


def test_two_merchants_may_use_one_sku(factory, tmp_path):
    """A SKU is the merchant's own code (migration 0046): M1's product under M0's SKU loads, where the
    import failed on the marketplace-wide unique SKU."""
    write_market(tmp_path / "m", sku1="S0")
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    with factory() as s:
        assert {(p.merchant_id, p.sku) for p in s.scalars(select(Product))} == {("M0", "S0"), ("M1", "S0")}


@pytest.mark.parametrize("twice", ["in the file", "stored"])
def test_a_merchants_sku_named_for_two_products_is_refused_and_loads_nothing(factory, tmp_path, twice):
    """The database refused such a load with an IntegrityError (a traceback from `crosscart db load`);
    it is one `duplicate_sku` line naming the merchant and SKU, and nothing is loaded."""
    if twice == "stored":  # P9 of M1 was loaded before under S1; the file names P1 so
        write_market(tmp_path / "old")
        table = pq.read_table(tmp_path / "old" / "products.parquet")
        ids = [("P9" if p == "P1" else p) for p in table["product_id"].to_pylist()]
        table = table.set_column(0, "product_id", pa.array(ids, pa.string()))
        pq.write_table(table, tmp_path / "old" / "products.parquet")
        load_marketplace(factory, tmp_path / "old", keyring=Keyring(KEY), events="none", orders=False)
        write_market(tmp_path / "m")
    else:  # P0 and P1 both M0's S0
        write_market(tmp_path / "m", sku1="S0", merchant1="M0")
    before = _counts(factory)
    with pytest.raises(ValidationError) as refused:
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert refused.value.code == "duplicate_sku"
    clash = ("M1", "S1") if twice == "stored" else ("M0", "S0")
    assert str(refused.value) == f"merchant SKUs named for two products: {[clash]}"
    assert _counts(factory) == before


def test_purchases_only_and_bad_identity(factory, tmp_path):
    write_market(tmp_path / "m")
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), events="purchases")  # and coupon events
    with factory() as s:
        assert sorted(s.scalars(select(BehaviorEvent.event_id))) == ["E2", "E3"]
    write_market(tmp_path / "bad", bad_id=True)
    before = _counts(factory)
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "bad", keyring=Keyring(KEY))
    assert err.value.code == "invalid_id_number" and make_id_number(1)[:-1] not in err.value.message
    assert _counts(factory) == before
    with pytest.raises(ValidationError):
        load_marketplace(factory, tmp_path / "missing", keyring=Keyring(KEY))


def test_dangling_references_are_refused_and_load_nothing(factory, tmp_path):
    write_market(tmp_path / "m")
    merchants = tmp_path / "m" / "merchants.parquet"
    pq.write_table(pq.read_table(merchants).slice(0, 1), merchants)  # drop M1, which sells P1
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert err.value.code == "unknown_reference" and "M1" in err.value.message
    assert set(_counts(factory).values()) == {0}


def test_a_coupon_id_not_in_its_stored_form_is_refused_by_the_import(factory, tmp_path):
    """The coupon was stored as `CP1` (`check_coupon_id`'s one form) while the file's grants, history and
    campaigns name it `ＣＰ1` (full width): they would point at no coupon."""
    write_market(tmp_path / "m")
    coupons = tmp_path / "m" / "coupons.parquet"
    pq.write_table(pq.read_table(coupons).set_column(0, "coupon_id", pa.array(["\uff23\uff301"])), coupons)
    part = tmp_path / "m" / "events" / "part-00001.parquet"
    events = pq.read_table(part)
    column = events.schema.get_field_index("coupon_id")
    ids = ["\uff23\uff301" if c == "CP1" else c for c in events.column("coupon_id").to_pylist()]
    pq.write_table(events.set_column(column, "coupon_id", pa.array(ids, pa.string())), part)
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert err.value.code == "invalid_coupon" and "'CP1'" in err.value.message
    assert set(_counts(factory).values()) == {0}


def test_a_coupon_id_that_create_coupon_refuses_is_refused_by_the_import_too(factory, tmp_path):
    write_market(tmp_path / "m")
    coupons = tmp_path / "m" / "coupons.parquet"
    table = pq.read_table(coupons)
    pq.write_table(table.set_column(0, "coupon_id", pa.array(["=CP1"])), coupons)
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert err.value.code == "invalid_coupon" and "=CP1" in err.value.message
    assert set(_counts(factory).values()) == {0}


def add_history(root, extra=()):
    """Purchase history on top of write_market: a mixed-mode basket, a coupon redemption, a session-less
    purchase, an order above the per-order limit and a person past the annual limit."""
    ev = dict(quantity=1, value=0.0, campaign_id=None, coupon_id=None, query=None)
    h = timedelta(hours=1)
    events = [
        {
            **ev,
            "event_id": "H1",
            "ts": T0 + h,
            "shopper_id": "U0",
            "session_id": "b",
            "event_type": "purchase",
            "product_id": "P0",
            "quantity": 2,
            "value": 1496.0,
        },
        {
            **ev,
            "event_id": "H2",
            "ts": T0 + 2 * h,
            "shopper_id": "U0",
            "session_id": "b",
            "event_type": "purchase",
            "product_id": "P1",
            "value": 99.5,
        },
        {
            **ev,
            "event_id": "H3",
            "ts": T0 + 2 * h,
            "shopper_id": "U1",
            "session_id": "k",
            "event_type": "purchase",
            "product_id": "P0",
            "value": 820.0,
        },
        {
            **ev,
            "event_id": "H4",
            "ts": T0 + 2 * h,
            "shopper_id": "U1",
            "session_id": "k",
            "event_type": "coupon_redeem",
            "product_id": None,
            "quantity": 0,
            "campaign_id": "K1",
            "coupon_id": "CP1",
        },
        {
            **ev,
            "event_id": "H5",
            "ts": T0 + 3 * h,
            "shopper_id": "U2",
            "session_id": None,
            "event_type": "purchase",
            "product_id": "P0",
            "quantity": 7,
            "value": 6160.0,
        },
        {
            **ev,
            "event_id": "H6",
            "ts": T0 + 4 * h,
            "shopper_id": "U2",
            "session_id": None,
            "event_type": "purchase",
            "product_id": "P0",
            "quantity": 25,
            "value": 22000.0,
        },
        *extra,
    ]
    schema = pq.read_schema(root / "events" / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(events, schema), root / "events" / "part-00002.parquet")
    assignments = [
        dict(campaign_id="K1", shopper_id=s, arm=arm, converted=True, spend=0.0, redeemed=arm != "control")
        for s, arm in (("U0", "control"), ("U1", "CP1"))
    ]
    pq.write_table(pa.Table.from_pylist(assignments), root / "assignments.parquet")


def _history(factory):
    from commerce.coupons import CouponRedemption, CouponShopperUsage
    from commerce.orders import AnnualSpend, OrderLine, OrderStatusChange

    with factory() as s:
        return {
            "orders": s.scalar(select(func.count()).select_from(Order)),
            "lines": s.scalar(select(func.count()).select_from(OrderLine)),
            "changes": s.scalar(select(func.count()).select_from(OrderStatusChange)),
            "redemptions": s.scalar(select(func.count()).select_from(CouponRedemption)),
            "coupon": (s.get(Coupon, "CP1").used, s.get(Coupon, "CP1").spent),
            "usage": s.get(CouponShopperUsage, ("CP1", "U1")).used,
            "annual": sorted(s.execute(select(AnnualSpend.identity_digest, AnnualSpend.amount)).tuples()),
        }


def test_purchase_history_becomes_completed_orders_once(factory, tmp_path):
    from commerce.services.orders import annual_spend, trace_order
    from commerce.services.revenue import revenue_report
    from commerce.tax import TaxRates, general_trade_tax

    write_market(tmp_path / "m")
    add_history(tmp_path / "m")
    stats = load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), events="none")  # orders anyway
    assert (stats.rows["orders"], stats.rows["order_lines"], stats.rows["redemptions"]) == (6, 6, 1)
    assert (stats.rows["over_order_limit"], stats.rows["over_annual_limit"]) == (2, 1)
    with factory() as s:
        by_ref = {o.import_ref: o for o in s.scalars(select(Order))}
        assert set(by_ref) == {"E2", "H1", "H2", "H3", "H5", "H6"}  # session b split by fulfillment mode
        assert {o.status for o in by_ref.values()} == {"completed"}
        first = by_ref["E2"]  # 880 paid for one P0 (perfume: VAT 13%, consumption tax 15%)
        line = first.lines[0]
        assert (line.gross, line.discount, line.tax, line.total) == (
            Decimal("880.00"),
            Decimal("0.00"),
            Decimal("202.92"),
            Decimal("1082.92"),
        )  # 880 x 0.28 / 0.85 x 0.7 = 202.917...
        assert line.margin == Decimal("264.00") and first.tax_regime == "cross_border"  # cost 616
        assert (first.created_at, first.paid_at, first.fulfillment) == (T0, T0, "bonded")
        assert (by_ref["H1"].lines[0].unit_price, by_ref["H1"].lines[0].list_price) == (
            Decimal("748.00"),
            Decimal("880.00"),
        )  # the price actually paid, not the list price
        assert by_ref["H2"].fulfillment == "direct_mail" and by_ref["H2"].lines[0].commission == Decimal(
            "7.96"
        )
        coupon_order = by_ref["H3"]  # 820 paid with 15% off capped at 60: gross 880, discount 60
        assert (coupon_order.coupon_id, coupon_order.goods_total, coupon_order.discount_total) == (
            "CP1",
            Decimal("880.00"),
            Decimal("60.00"),
        )
        assert coupon_order.total == sum(x.total for x in coupon_order.lines)
        big = by_ref["H5"]  # 6,160 > 5,000 in 7 items: recorded, taxed as general trade
        rates = TaxRates(Decimal("0.13"), Decimal("0.15"), Decimal("0.10"))
        assert big.tax_regime == "general_trade" and big.tax_total == general_trade_tax(
            Decimal("6160"), rates
        )
        assert [step.status for step in trace_order(s, big.order_id)] == ["completed"]
        digest = {i: id_digest(make_id_number(i), KEY) for i in range(3)}
        assert annual_spend(s, digest[0], 2025) == Decimal("2475.50")  # 880 + 1496 + 99.5
        assert annual_spend(s, digest[1], 2025) == Decimal("820.00")  # net of the coupon
        assert annual_spend(s, digest[2], 2025) == Decimal("26000.00")  # 28,160 capped at the limit
        report = revenue_report(s, T0, T0 + timedelta(days=1), period="day")
        margin = {r.source: r.amount for r in report}["self_operated_margin"]
        assert margin == sum(x.margin for o in by_ref.values() for x in o.lines) != 0
    after = _history(factory)
    assert after["redemptions"] == 1 and after["coupon"] == (1, Decimal("60.00")) and after["usage"] == 1
    assert after["changes"] == 6
    again = load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert again.rows["orders"] == 0 and again.rows["campaigns"] == 0
    assert _history(factory) == after


def test_past_campaigns_load_as_completed_with_outcomes(factory, tmp_path):
    from commerce.campaigns import Campaign, CampaignMember
    from commerce.services.campaigns import audience, campaign_outcomes

    write_market(tmp_path / "m")
    add_history(tmp_path / "m")
    stats = load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert (stats.rows["campaigns"], stats.rows["campaign_members"]) == (1, 2)
    with factory() as s:
        k1 = s.get(Campaign, "K1")
        assert (k1.status, k1.channel, k1.started_at, k1.completed_at) == (
            "completed",
            "email",
            T0,
            T0 + timedelta(days=7),
        )
        assert (k1.control_share, k1.budget) == (Decimal("0.4000"), Decimal("60.00"))  # discount given
        assert k1.spent == Decimal("60.00")  # all of it spent: a hard cap after import too
        members = {m["shopper_id"]: m for m in audience(s, "K1")}
        grant = s.scalar(select(CouponGrant).where(CouponGrant.shopper_id == "U1"))
        assert members["U1"]["grant_id"] == grant.id and members["U0"]["arm"] == "control"
        outcomes = {o["shopper_id"]: o for o in campaign_outcomes(s, "K1")}
        assert outcomes["U1"]["revenue"] == Decimal("880.00") and outcomes["U1"]["discount"] == Decimal("60")
        assert outcomes["U0"]["converted"] and outcomes["U0"]["discount"] == 0
        logged = s.scalars(select(CampaignMember.arm_probabilities).where(CampaignMember.campaign_id == "K1"))
        assert list(logged) == [{"control": 0.4, "CP1": 0.6}] * 2  # the contract's design: holdout, else CP1
    assert load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY)).rows["campaigns"] == 0


def test_past_campaigns_take_their_coupons_once_stored(factory, tmp_path):
    """`coupons.campaign_id` is a foreign key: the coupons load before any campaign, without one, and
    a past campaign takes its coupons when it is stored (a later load of the same directory too)."""
    from commerce.campaigns import Campaign

    write_market(tmp_path / "m")
    add_history(tmp_path / "m")
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), past_campaigns=False)
    with factory() as s:
        assert s.get(Campaign, "K1") is None and s.get(Coupon, "CP1").campaign_id is None
        assert s.scalar(select(CouponGrant.campaign_id)) == "K1"  # the grant event's, as it happened
    assert load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY)).rows["campaigns"] == 1
    with factory() as s:
        coupon = s.get(Coupon, "CP1")
        assert (coupon.campaign_id, coupon.requires_grant) == ("K1", True)
        assert s.get(Campaign, "K1").spent == coupon.spent == Decimal("60.00")


def test_campaign_spend_holds_whichever_is_imported_first(factory, tmp_path):
    """Campaigns loaded before the orders that redeemed their coupons: the orders raise the campaign's
    spent (and its budget, history being what happened) to the discounts its redemptions took."""
    from commerce.campaigns import Campaign
    from commerce.services.coupons import campaign_spend_drift

    write_market(tmp_path / "m")
    add_history(tmp_path / "m")
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), orders=False)
    with factory() as s:
        k1 = s.get(Campaign, "K1")
        assert (k1.budget, k1.spent) == (Decimal("0.01"), Decimal("0.00"))  # nothing redeemed yet
    stats = load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert stats.rows["redemptions"] == 1
    with factory() as s:
        k1 = s.get(Campaign, "K1")
        assert (k1.budget, k1.spent) == (Decimal("60.00"), Decimal("60.00"))
        assert campaign_spend_drift(s) == []


def test_history_with_unknown_products_is_refused(factory, tmp_path):
    write_market(tmp_path / "m")
    ghost = dict(
        event_id="H9",
        ts=T0,
        shopper_id="U0",
        session_id="z",
        event_type="purchase",
        product_id="P9",
        quantity=1,
        value=5.0,
        campaign_id=None,
        coupon_id=None,
        query=None,
    )
    add_history(tmp_path / "m", extra=[ghost])
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), events="none")
    assert err.value.code == "unknown_reference" and "P9" in err.value.message
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0


def test_history_skips_purchases_of_shoppers_without_identity(factory, tmp_path):
    """Customs orders need a verified buyer: U2 has no identity, so its two purchases stay events only."""
    write_market(tmp_path / "m")
    add_history(tmp_path / "m")
    identities = tmp_path / "m" / "identities.parquet"
    pq.write_table(pq.read_table(identities).slice(0, 2), identities)  # U0, U1
    stats = load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), events="purchases")
    assert (stats.rows["orders"], stats.rows["skipped_no_identity"]) == (4, 2)
    with factory() as s:
        assert set(s.scalars(select(Order.shopper_id))) == {"U0", "U1"}
        assert {"H5", "H6"} <= set(s.scalars(select(BehaviorEvent.event_id)))


def test_a_split_sessions_coupon_is_redeemed_once(factory, tmp_path):
    """Session b mixes bonded and direct-mail goods (two orders); its one redemption goes to one order."""
    from commerce.coupons import CouponRedemption

    redeem = dict(
        event_id="H7", ts=T0 + timedelta(hours=2), shopper_id="U0", session_id="b",
        event_type="coupon_redeem", product_id=None, quantity=0, value=0.0, campaign_id="K1",
        coupon_id="CP1", query=None,
    )  # fmt: skip
    write_market(tmp_path / "m")
    add_history(tmp_path / "m", extra=[redeem])
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY), events="none", past_campaigns=False)
    with factory() as s:
        mine = s.scalars(select(CouponRedemption).where(CouponRedemption.shopper_id == "U0")).all()
        assert len(mine) == 1 and s.get(Order, mine[0].order_id).import_ref == "H1"
        assert s.scalar(select(Order.coupon_id).where(Order.import_ref == "H2")) is None
        assert s.get(Coupon, "CP1").used == 2  # U0 and U1


def test_imported_licence_numbers_are_stored_in_the_form_applications_are_checked_in(factory, tmp_path):
    """The import stored licence numbers as written, so an imported `l‑1` (lower case, a non-breaking
    hyphen) did not stop a merchant applying with `L-1`: one licence, two merchants."""
    from commerce.db import transaction
    from commerce.errors import Conflict
    from commerce.merchants import Merchant
    from commerce.services import merchants

    write_market(tmp_path / "m")
    path = tmp_path / "m" / "merchants.parquet"
    table = pq.read_table(path)
    column = table.schema.get_field_index("licence_no")
    pq.write_table(table.set_column(column, "licence_no", pa.array(["l\u20110", "L1"])), path)
    load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    with factory() as s:
        assert s.scalars(select(Merchant.licence_no).order_by(Merchant.merchant_id)).all() == ["L-0", "L1"]
    with pytest.raises(Conflict), transaction(factory) as s:
        merchants.apply(s, merchants.MerchantApplication("Other", "FR", "L-0", ["Other"]))


@pytest.mark.parametrize(
    ("name", "column", "given"),
    [
        ("merchants.parquet", "merchant_id", "\uff2d0"),  # Ｍ0, full width: stored as M0
        ("products.parquet", "product_id", "P0 "),
        ("campaigns.parquet", "campaign_id", "\uff2b1"),  # Ｋ1
        ("products.parquet", "product_id", "P0\u200b"),  # no form of it is an id
        ("shoppers.parquet", "shopper_id", "\uff35\uff10"),  # Ｕ０
        ("categories.parquet", "category_id", " C1"),
    ],
)
def test_an_id_not_in_its_stored_form_is_refused_by_the_import(factory, tmp_path, name, column, given):
    """A chosen id is stored in its one form (`chosen_id`), while the other files name the row by the
    file's spelling: stock, events, orders, identities and audiences would point at nothing."""
    write_market(tmp_path / "m")
    path = tmp_path / "m" / name
    table = pq.read_table(path)
    ids = [*table.column(column).to_pylist()[:-1], given]  # the last row: a leaf category
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, pa.array(ids)), path)
    with pytest.raises(ValidationError) as err:
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
    assert err.value.code == "invalid_id" and repr(given) in err.value.message


@pytest.mark.parametrize(
    ("name", "column"), [("shoppers.parquet", "shopper_id"), ("campaigns.parquet", "campaign_id")]
)
def test_an_id_column_of_numbers_is_refused_by_the_import(factory, tmp_path, name, column):
    """An id column written as integers (a spreadsheet export, `pd.to_parquet` of numeric ids) is refused
    naming the file and the column, before anything loads (`commerce.inputs`): it was a TypeError."""
    write_market(tmp_path / "m")
    path = tmp_path / "m" / name
    table = pq.read_table(path)
    ids = pa.array(range(1, table.num_rows + 1), pa.int64())
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, ids), path)
    with pytest.raises(BadInputFile, match=f"{name}: column {column} is int64, not text"):
        load_marketplace(factory, tmp_path / "m", keyring=Keyring(KEY))
