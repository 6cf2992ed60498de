"""Coupon rules: validation, grants (with events), eligibility, budget stop, and release on cancellation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from commerce.coupons import Coupon, CouponGrant
from commerce.db import transaction
from commerce.errors import LimitExceeded, NotFound, ValidationError
from commerce.events import BehaviorEvent
from commerce.services import coupons, orders
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import NOW

C = coupons.CouponInput


def _campaign_coupon(session, campaign_id, data):
    """A grant-only coupon of `campaign_id`, granted to s0, s1 and s2 as a launch grants (unchecked)."""
    coupons.create_coupon(session, replace(data, campaign_id=campaign_id, requires_grant=True))
    coupons.grant_audience(
        session, data.coupon_id, ["s0", "s1", "s2"], campaign_id=campaign_id, channel="site"
    )


BAD_COUPONS = [
    (C("gift", "5"), ValidationError),
    (C("percent_off", "1.5"), ValidationError),
    (C("amount_off", "-5"), ValidationError),
    (C("amount_off", 5.0), ValidationError),
    (C("amount_off", "5", scope_type="category"), ValidationError),
    (C("amount_off", "5", scope_type="product", scope_id="nope"), NotFound),
    (C("amount_off", "5", starts_at=NOW, ends_at=NOW), ValidationError),
    (C("amount_off", "5", usage_limit=0), ValidationError),
    (
        C("amount_off", "5", issuer="store", merchant_id="m_ok"),
        ValidationError,
    ),  # store coupon, platform scope
    (
        C("amount_off", "5", issuer="store", merchant_id="m_ok", scope_type="product", scope_id="p_bad"),
        ValidationError,
    ),
    # the holdout arm's name: a campaign's shoppers given coupon `control` were stored as its holdout
    (C("amount_off", "5", coupon_id="control"), ValidationError),
    (C("amount_off", "5", coupon_id="\uff43\uff4f\uff4e\uff54\uff52\uff4f\uff4c"), ValidationError),
]


def test_bad_coupons_are_refused_and_nothing_is_stored(market):
    for data, error in BAD_COUPONS:
        with pytest.raises(error), transaction(market) as s:
            coupons.create_coupon(s, data)
    with market() as s:
        assert s.scalar(select(func.count()).select_from(Coupon)) == 0


def test_grants_eligibility_and_release(market):
    with transaction(market) as s:
        coupons.create_coupon(s, C("amount_off", "10", coupon_id="vip", requires_grant=True))
        coupons.create_coupon(s, C("amount_off", "5", coupon_id="open", ends_at=NOW + timedelta(days=1)))
        coupons.create_coupon(
            s,
            C(
                "percent_off",
                "0.5",
                coupon_id="shop",
                issuer="store",
                merchant_id="m_ok",
                scope_type="merchant",
                scope_id="m_ok",
                cap="20",
                budget="25",
            ),
        )
        assert coupons.grant_coupon(s, "vip", ["s0", "s1"], channel="email", at=NOW) == 2
        assert coupons.grant_coupon(s, "vip", ["s1", "s2"], at=NOW) == 1  # s1 already has it
        with pytest.raises(NotFound):
            coupons.grant_coupon(s, "vip", ["ghost"])
    with market() as s:
        assert s.scalar(select(func.count()).select_from(CouponGrant)) == 3
        grants = s.scalars(select(BehaviorEvent).where(BehaviorEvent.event_type == "coupon_grant")).all()
        assert sorted(e.shopper_id for e in grants) == ["s0", "s1", "s2"]
        assert {(e.coupon_id, e.campaign_id, e.product_id) for e in grants} == {("vip", None, None)}
        assert [c.coupon_id for c in coupons.eligible_coupons(s, "s0", NOW)] == ["open", "shop", "vip"]
        assert [c.coupon_id for c in coupons.eligible_coupons(s, "s0", NOW + timedelta(days=2))] == [
            "shop",
            "vip",
        ]
    with transaction(market) as s:
        first = checkout(s, "s0", [CartLine("p_cream", 1)], coupon_id="shop", at=NOW)
        assert first.discount_total == Decimal("20.00")  # 50% capped at 20
    with pytest.raises(LimitExceeded) as err, transaction(market) as s:  # 20 more would pass the 25 budget
        checkout(s, "s1", [CartLine("p_cream", 1)], coupon_id="shop", at=NOW)
    assert err.value.code == "coupon_budget_exhausted"
    with market() as s:
        assert "vip" in [c.coupon_id for c in coupons.eligible_coupons(s, "s0", NOW)]
        assert "shop" not in [c.coupon_id for c in coupons.eligible_coupons(s, "s0", NOW)]  # own use taken
    with transaction(market) as s:
        orders.cancel_order(s, first.order_id, "changed my mind")
    with market() as s:
        shop = s.get(Coupon, "shop")
        assert (shop.used, shop.spent) == (0, Decimal("0.00"))
        assert "shop" in [c.coupon_id for c in coupons.eligible_coupons(s, "s0", NOW)]
    with transaction(market) as s:  # the returned use can be redeemed again
        assert checkout(s, "s0", [CartLine("p_cream", 1)], coupon_id="shop", at=NOW).discount_total == 20
        coupons.end_coupon(s, "vip", NOW)
        coupons.end_coupon(s, "open", NOW + timedelta(days=5))  # never extends the window
        assert s.get(Coupon, "open").ends_at == NOW + timedelta(days=1)
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="vip", at=NOW)
    assert err.value.code == "coupon_expired"


def test_refund_returns_the_coupon_use_and_budget(market):
    """A refunded sale gives back the coupon's use, the shopper's use and the budget, like a cancel."""
    from commerce.coupons import CouponRedemption, CouponShopperUsage

    with transaction(market) as s:
        coupons.create_coupon(s, C("amount_off", "30", coupon_id="r", usage_limit=1, budget="30"))
        order = checkout(s, "s0", [CartLine("p_cream", 1)], coupon_id="r", at=NOW)
        orders.pay_order(s, order.order_id, "pay-r", at=NOW)
        orders.clear_customs(s, order.order_id, at=NOW)
        orders.ship_order(s, order.order_id, "T-1", at=NOW)
    with pytest.raises(LimitExceeded) as err, transaction(market) as s:  # the single use is taken
        checkout(s, "s1", [CartLine("p_cream", 1)], coupon_id="r", at=NOW)
    assert err.value.code == "coupon_exhausted"
    later = NOW + timedelta(days=3)
    with transaction(market) as s:
        orders.refund_order(s, order.order_id, "parcel lost", at=later)
    with market() as s:
        coupon = s.get(Coupon, "r")
        assert (coupon.used, coupon.spent) == (0, Decimal("0.00"))
        assert s.get(CouponShopperUsage, ("r", "s0")).used == 0
        assert s.scalar(select(CouponRedemption.released_at)) == later
        assert "r" in [c.coupon_id for c in coupons.eligible_coupons(s, "s0", NOW)]
    with transaction(market) as s:  # the returned use and budget are redeemable again, by anyone
        assert checkout(s, "s1", [CartLine("p_cream", 1)], coupon_id="r", at=NOW).discount_total == 30
    with market() as s:
        assert (s.get(Coupon, "r").used, s.get(Coupon, "r").spent) == (1, Decimal("30.00"))


def test_a_campaigns_budget_is_a_hard_cap_over_all_its_coupons(market):
    """Two coupons without budgets of their own share their campaign's 35 CNY: a redemption that would
    pass it is refused, and a cancelled order gives its discount back to the campaign."""
    from commerce.campaigns import Campaign
    from commerce.services.campaigns import CampaignInput, create_campaign

    with transaction(market) as s:
        create_campaign(
            s, CampaignInput("cap", "site", "35", NOW, NOW + timedelta(days=7), campaign_id="cmp")
        )
        _campaign_coupon(s, "cmp", C("amount_off", "20", coupon_id="c20"))
        _campaign_coupon(s, "cmp", C("amount_off", "10", coupon_id="c10"))
        coupons.create_coupon(s, C("amount_off", "20", coupon_id="free"))
        first = checkout(s, "s0", [CartLine("p_cream", 1)], coupon_id="c20", at=NOW)
        checkout(s, "s1", [CartLine("p_cream", 1)], coupon_id="c10", at=NOW)
    with pytest.raises(LimitExceeded) as err, transaction(market) as s:  # 30 + 10 would pass 35
        checkout(s, "s2", [CartLine("p_cream", 1)], coupon_id="c10", at=NOW)
    assert err.value.code == "campaign_budget_exhausted"
    with market() as s:  # the refused redemption left every counter as it was
        assert s.get(Campaign, "cmp").spent == Decimal("30.00")
        assert (s.get(Coupon, "c10").used, s.get(Coupon, "c10").spent) == (1, Decimal("10.00"))
    with transaction(market) as s:
        checkout(s, "s2", [CartLine("p_cream", 1)], coupon_id="free", at=NOW)  # no campaign: no cap
        orders.cancel_order(s, first.order_id, "changed my mind")
    with market() as s:
        assert s.get(Campaign, "cmp").spent == Decimal("10.00")
    with transaction(market) as s:  # the returned 20 is redeemable again
        assert checkout(s, "s2", [CartLine("p_cream", 1)], coupon_id="c10", at=NOW).discount_total == 10
    with market() as s:
        assert s.get(Campaign, "cmp").spent == Decimal("20.00")


def test_the_listing_offers_only_coupons_the_budget_lets_checkout_accept(market):
    """A coupon is listed only while its own budget and its campaign's cover the most it can take off
    an order (value or cap), the rule checkout refuses by; the listing is one query however many
    coupons and campaigns there are. An uncapped percentage counts as 0.01 CNY, so it is listed while
    any budget is left and a large cart may still be refused."""
    from sqlalchemy import event

    from commerce.services.campaigns import CampaignInput, create_campaign

    week = NOW + timedelta(days=7)
    with transaction(market) as s:
        create_campaign(s, CampaignInput("cap", "site", "60", NOW, week, campaign_id="cmp"))
        create_campaign(s, CampaignInput("small", "site", "20", NOW, week, campaign_id="tiny"))
        _campaign_coupon(s, "cmp", C("amount_off", "20", coupon_id="a20"))
        _campaign_coupon(s, "cmp", C("amount_off", "10", coupon_id="a10"))
        _campaign_coupon(s, "cmp", C("percent_off", "0.15", cap="50", coupon_id="pc"))
        _campaign_coupon(s, "cmp", C("percent_off", "0.10", coupon_id="pu"))
        coupons.create_coupon(s, C("amount_off", "20", budget="25", coupon_id="own"))
        _campaign_coupon(s, "tiny", C("amount_off", "20", coupon_id="t20"))
        _campaign_coupon(s, "tiny", C("percent_off", "0.10", coupon_id="tpu"))

    def listed(shopper):
        with market() as s:
            return [c.coupon_id for c in coupons.eligible_coupons(s, shopper, NOW)]

    everything = ["a10", "a20", "own", "pc", "pu", "t20", "tpu"]
    assert listed("s2") == everything
    with transaction(market) as s:
        assert checkout(s, "s0", [CartLine("p_cream", 1)], coupon_id="pc", at=NOW).discount_total == 45
        checkout(s, "s1", [CartLine("p_cream", 1)], coupon_id="own", at=NOW)  # 5 CNY of its own left
        checkout(s, "s0", [CartLine("p_cream", 1)], coupon_id="t20", at=NOW)  # campaign tiny used up
    assert listed("s2") == ["a10", "pu"]  # cmp has 15 left: a20 and pc (up to 50) would not fit
    refused = {"a20": "campaign_budget_exhausted", "pc": "campaign_budget_exhausted"}
    refused |= {"own": "coupon_budget_exhausted", "tpu": "campaign_budget_exhausted"}
    for coupon_id, code in refused.items():  # checkout agrees: each hidden coupon is refused (its full
        # discount; pc's 14.99 off the tea alone would fit: the listing knows no cart, so it is cautious)
        with pytest.raises(LimitExceeded) as err, transaction(market) as s:
            checkout(s, "s2", [CartLine("p_cream", 1)], coupon_id=coupon_id, at=NOW)
        assert err.value.code == code, coupon_id
    with pytest.raises(LimitExceeded), transaction(market) as s:  # 30 off the cream: above the 15 left
        checkout(s, "s2", [CartLine("p_cream", 1)], coupon_id="pu", at=NOW)
    with transaction(market) as s:  # a listed coupon is accepted
        assert checkout(s, "s1", [CartLine("p_tea", 1)], coupon_id="a10", at=NOW).discount_total == 10
    assert listed("s2") == ["pu"]  # 5 left
    with pytest.raises(LimitExceeded), transaction(market) as s:  # 9.99 off the tea: above the 5 left
        checkout(s, "s2", [CartLine("p_tea", 1)], coupon_id="pu", at=NOW)
    with transaction(market) as s:  # 5.00 off a 50 CNY cart fits exactly
        assert checkout(s, "s2", [CartLine("p_mail", 1)], coupon_id="pu", at=NOW).discount_total == 5
    assert listed("s0") == []  # cmp, tiny and own's budgets are all used up

    statements = []
    with market() as s:
        event.listen(s.get_bind(), "before_cursor_execute", lambda *a: statements.append(a[2]))
        coupons.eligible_coupons(s, "s1", NOW)
    selects = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2  # the shopper, then the coupons with their campaigns' budgets
