"""Migration 0026 sets every campaign's `spent` as `crosscart db campaign-spend --repair` does, on
SQLite and PostgreSQL: the same figures on one seeded database (the rule is written twice, since a
migration must not import app code)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from alembic import command
from sqlalchemy import select, update

from commerce import migrate
from commerce.campaigns import Campaign
from commerce.db import make_engine, transaction
from commerce.services import coupons, orders
from commerce.services.campaigns import CampaignInput, create_campaign
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import NOW

BEFORE = "0025_campaign_spent"
AFTER = "0026_campaign_spent_backfill"


def _spent(factory) -> dict[str, Decimal]:
    with factory() as s:
        return dict(s.execute(select(Campaign.campaign_id, Campaign.spent)).all())


def test_0026_backfills_spent_as_the_repair_does(market, database_url):
    with transaction(market) as s:
        for cid, budget in (("ok", "100"), ("over", "100"), ("idle", "100"), ("fen", "100")):
            create_campaign(
                s, CampaignInput(cid, "site", budget, NOW, NOW + timedelta(days=7), campaign_id=cid)
            )
        for cid, kind, value in (
            ("ok", "amount_off", "20"),
            ("over", "amount_off", "20"),
            ("fen", "percent_off", "0.0333"),
        ):
            coupons.create_coupon(
                s,
                coupons.CouponInput(
                    kind, value, coupon_id=cid, campaign_id=cid, per_shopper_limit=5, requires_grant=True
                ),
            )
            coupons.grant_audience(s, cid, ["s0", "s1", "s2"], campaign_id=cid, channel="site")
        coupons.create_coupon(s, coupons.CouponInput("amount_off", "7", coupon_id="loose"))
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="ok", at=NOW)
        cancelled = checkout(s, "s1", [CartLine("p_tea", 1)], coupon_id="ok", at=NOW)
        orders.cancel_order(s, cancelled.order_id, "changed my mind")  # its 20 was given back
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="over", at=NOW)
        checkout(s, "s2", [CartLine("p_tea", 1)], coupon_id="over", at=NOW)
        for _ in range(3):
            checkout(s, "s1", [CartLine("p_tea", 1)], coupon_id="fen", at=NOW)  # 3.33 each
        checkout(s, "s2", [CartLine("p_tea", 1)], coupon_id="loose", at=NOW)
        # as 0025 left a database: nothing counted; "over" took more than its (lowered) budget
        s.execute(update(Campaign).values(spent=0))
        s.execute(update(Campaign).where(Campaign.campaign_id == "over").values(budget=25))
    with market() as s:  # what --repair would set, not kept
        assert {d.campaign_id for d in coupons.recount_campaign_spend(s)} == {"ok", "over", "fen"}
        repaired = dict(s.execute(select(Campaign.campaign_id, Campaign.spent)).all())
        s.rollback()
    assert repaired == {"ok": 20, "over": 25, "idle": 0, "fen": Decimal("9.99")}

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:  # the ORM built this schema: 0025's
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = connection
            command.stamp(cfg, BEFORE)
    finally:
        engine.dispose()
    assert _spent(market) == dict.fromkeys(repaired, 0)
    migrate.upgrade(database_url, AFTER)  # the ORM's schema has 0027's key already
    assert _spent(market) == repaired
    assert migrate.schema_diff(database_url) == []
    migrate.downgrade(database_url, BEFORE)
    assert _spent(market) == repaired and migrate.current(database_url) == BEFORE
