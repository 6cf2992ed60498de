"""Campaign lifecycle in the database (SQLite and PostgreSQL): audience, grants, export, outcomes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

import commerce.all_models  # noqa: F401  (complete metadata)
from commerce.coupons import Coupon, CouponGrant, CouponRedemption
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.errors import InvalidState, NotFound, ValidationError
from commerce.orders import Order
from commerce.services import campaigns as cmp
from commerce.services._util import FORMULA_START, csv_cell
from commerce.services.coupons import CouponInput, create_coupon
from commerce.services.logistics import seed_default_partners
from commerce.services.shoppers import create_shopper
from commerce.shoppers import Shopper

START = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def factory(database_url):
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def draft(factory):
    """A draft e-mail campaign with two coupons and shoppers S0..S9."""
    with transaction(factory) as s:
        seed_default_partners(s)
        for i in range(10):
            create_shopper(s, f"S{i}", "Shanghai")
        campaign = cmp.create_campaign(
            s,
            cmp.CampaignInput(
                "Spring", "email", "500.00", START, START + timedelta(days=7), "0.2", campaign_id="CMP-T"
            ),
        )
        for cid, value, min_spend in (("CP30", "30", "199"), ("CP10", "10", "99")):
            create_coupon(
                s,
                CouponInput(
                    kind="amount_off", value=value, min_spend=min_spend, campaign_id=campaign.campaign_id,
                    requires_grant=True, coupon_id=cid,
                ),
            )  # fmt: skip
    return campaign.campaign_id


AUDIENCE = [
    ("S0", "CP30"),
    ("S1", "CP30"),
    ("S2", "CP10"),
    ("S3", "CP10"),
    ("S4", "control"),
    ("S5", "control"),
]


def order(shopper, goods, at):
    return Order(
        shopper_id=shopper, status="paid", fulfillment="bonded", partner_id="cainiao-bonded",
        tax_regime="cross_border", identity_digest="d" * 64, declared_name="Test", goods_total=Decimal(goods),
        discount_total=Decimal("0"), tax_total=Decimal("0"), total=Decimal(goods), created_at=at,
        delivery_earliest=at, delivery_latest=at,
    )  # fmt: skip


def test_full_lifecycle_grants_exports_and_measures(factory, draft):
    with transaction(factory) as s:
        assert cmp.set_audience(s, draft, AUDIENCE) == 6
        assert cmp.schedule_campaign(s, draft).status == "scheduled"
    with transaction(factory) as s:
        campaign = cmp.start_campaign(s, draft, at=START)
        assert campaign.status == "running"
        grants = s.scalars(select(CouponGrant).where(CouponGrant.campaign_id == draft)).all()
        assert sorted((g.shopper_id, g.coupon_id, g.channel) for g in grants) == [
            ("S0", "CP30", "email"),
            ("S1", "CP30", "email"),
            ("S2", "CP10", "email"),
            ("S3", "CP10", "email"),
        ]
        # purchases: S0 (treated, used CP30), S4 (holdout); S9 is not in the audience; S1 bought too late
        s.add_all(
            [
                order("S0", "250.00", START + timedelta(days=1)),
                order("S4", "120.00", START + timedelta(days=2)),
            ]
        )
        s.add_all(
            [
                order("S9", "999.00", START + timedelta(days=1)),
                order("S1", "80.00", START + timedelta(days=30)),
            ]
        )
        s.add(CouponRedemption(coupon_id="CP30", shopper_id="S0", amount=Decimal("30.00"), redeemed_at=START))
    with transaction(factory) as s:
        buf = io.StringIO()
        assert cmp.export_audience_csv(s, draft, buf) == 6
        lines = buf.getvalue().splitlines()
        assert lines[0] == "shopper_id,arm,coupon_id,channel,grant_id"
        assert lines[1].startswith("S0,CP30,CP30,email,") and lines[5] == "S4,control,,,"
        with pytest.raises(InvalidState, match="once completed"):
            cmp.campaign_outcomes(s, draft)
        cmp.complete_campaign(s, draft, at=START + timedelta(days=7))
    with transaction(factory) as s:
        outcomes = {r["shopper_id"]: r for r in cmp.campaign_outcomes(s, draft)}
    assert set(outcomes) == {"S0", "S1", "S2", "S3", "S4", "S5"}
    assert outcomes["S0"]["converted"] and outcomes["S0"]["revenue"] == Decimal("250.00")
    assert outcomes["S0"]["discount"] == Decimal("30.00")
    assert not outcomes["S1"]["converted"]  # outside the window
    assert outcomes["S4"]["converted"] and outcomes["S4"]["arm"] == "control"


def test_transitions_are_guarded(factory, draft):
    with transaction(factory) as s:
        with pytest.raises(ValidationError, match="no treated shoppers"):
            cmp.schedule_campaign(s, draft)
    with transaction(factory) as s:
        cmp.set_audience(s, draft, [("S0", "CP30")])
        with pytest.raises(ValidationError, match="no holdout"):
            cmp.schedule_campaign(s, draft)
    with transaction(factory) as s:
        with pytest.raises(InvalidState, match="is draft, not scheduled"):
            cmp.start_campaign(s, draft)
        with pytest.raises(InvalidState, match="not running"):
            cmp.complete_campaign(s, draft)
        cmp.set_audience(s, draft, AUDIENCE)
        cmp.schedule_campaign(s, draft)
    with transaction(factory) as s:
        with pytest.raises(InvalidState, match="only a draft"):
            cmp.set_audience(s, draft, AUDIENCE)
        with pytest.raises(InvalidState, match="is scheduled, not draft"):
            cmp.schedule_campaign(s, draft)


def test_audience_validation(factory, draft):
    with transaction(factory) as s:
        with pytest.raises(ValidationError, match="more than once"):
            cmp.set_audience(s, draft, [("S0", "CP30"), ("S0", "CP10")])
        with pytest.raises(ValidationError, match="neither 'control' nor coupons"):
            cmp.set_audience(s, draft, [("S0", "OTHER")])
        with pytest.raises(NotFound, match="unknown shoppers"):
            cmp.set_audience(s, draft, [("NOPE", "CP30")])
        with pytest.raises(NotFound, match="unknown campaign"):
            cmp.set_audience(s, "missing", [("S0", "CP30")])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(channel="fax"), "channel"),
        (dict(budget="0"), "budget"),
        (dict(control_share="1"), "control_share"),
        (dict(ends_at=START), "ends_at"),
    ],
)
def test_campaign_input_validation(factory, change, message):
    base = dict(name="X", channel="site", budget="10", starts_at=START, ends_at=START + timedelta(days=1))
    with transaction(factory) as s:
        with pytest.raises(ValidationError, match=message):
            cmp.create_campaign(s, cmp.CampaignInput(**{**base, **change}))


def test_the_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(factory, draft):
    evil = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)"]
    with transaction(factory) as s:
        # shopper ids and a coupon id stored before ids were checked (create_shopper and create_coupon
        # refuse them now)
        s.add_all(Shopper(shopper_id=shopper, region="Shanghai") for shopper in evil)
        s.execute(update(Coupon).where(Coupon.coupon_id == "CP10").values(coupon_id="-CP10"))
    with transaction(factory) as s:
        members = [(evil[0], "CP30"), (evil[1], "-CP10"), (evil[2], "control"), (evil[3], "control")]
        assert cmp.set_audience(s, draft, members) == 4
        buf = io.StringIO()
        assert cmp.export_audience_csv(s, draft, buf) == 4
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert not [v for r in rows for v in r.values() if v.startswith(FORMULA_START)]
    assert sorted(r["shopper_id"] for r in rows) == sorted("'" + e for e in evil)
    assert {r["arm"] for r in rows} == {"CP30", "'-CP10", "control"}


def test_csv_cells_starting_a_formula_get_a_quote_and_others_stay():
    for text in ("=1", "+1", "-1", "@a", "\tx", "\rx"):
        assert csv_cell(text) == "'" + text
    for value in ("a=1", "S1", "", "'=1", -5, None, 3.5):
        assert csv_cell(value) == value
