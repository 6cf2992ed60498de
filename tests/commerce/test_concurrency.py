"""Limits hold under concurrency on SQLite and PostgreSQL: stock, coupon uses and budget, the annual limit.

Every worker is a thread with its own session and transaction; a barrier makes them start together.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from commerce.catalog import Stock
from commerce.coupons import Coupon, CouponRedemption
from commerce.db import transaction
from commerce.errors import DomainError
from commerce.identity import Keyring
from commerce.orders import Order
from commerce.services import catalog, coupons, orders, shoppers
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import IDENTITY_KEY, NOW, make_id_number

WORKERS = 50


def run_concurrently(fn, n=WORKERS):
    """Call fn(i) for i in range(n) from n threads released at once; return (successes, domain errors)."""
    barrier = threading.Barrier(n)

    def call(i):
        barrier.wait()
        try:
            return "ok", fn(i)
        except DomainError as exc:
            return "refused", exc.code

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(call, range(n)))
    ok = [r for kind, r in results if kind == "ok"]
    refused = [r for kind, r in results if kind == "refused"]
    assert len(ok) + len(refused) == n  # anything else would have raised out of pool.map
    return ok, refused


def _add_shoppers(factory, n, *, same_person=False):
    with transaction(factory) as s:
        for i in range(n):
            shoppers.create_shopper(s, f"c{i}", "Shanghai")
            number = make_id_number(100 if same_person else 100 + i)
            shoppers.register_identity(s, f"c{i}", f"Buyer {i}", number, keyring=Keyring(IDENTITY_KEY))


def test_fifty_concurrent_checkouts_of_five_units_sell_exactly_five(market):
    _add_shoppers(market, WORKERS)

    def buy(i):
        with transaction(market) as s:
            order = checkout(s, f"c{i}", [CartLine("p_cream", 1)], at=NOW)
            orders.pay_order(s, order.order_id, f"pay-{i}", at=NOW)
            return order.order_id

    ok, refused = run_concurrently(buy)
    assert len(ok) == 5 and set(refused) == {"out_of_stock"}
    with market() as s:
        row = s.scalar(select(Stock).where(Stock.product_id == "p_cream"))
        assert (row.quantity, row.reserved) == (0, 0)
        assert s.scalar(select(func.count()).select_from(Order).where(Order.status == "paid")) == 5


def test_fifty_concurrent_redemptions_respect_usage_limit_and_budget(market):
    _add_shoppers(market, WORKERS)
    with transaction(market) as s:
        # The budget is exactly 10 uses of 29.99 CNY: hitting it to the fen must work, passing it must not.
        coupons.create_coupon(
            s, coupons.CouponInput("amount_off", "29.99", coupon_id="ten", usage_limit=10, budget="299.90")
        )

    def go(i):
        with transaction(market) as s:
            return checkout(s, f"c{i}", [CartLine("p_tea", 1)], coupon_id="ten", at=NOW).order_id

    ok, refused = run_concurrently(go)
    assert len(ok) == 10 and set(refused) == {"coupon_exhausted"}
    with market() as s:
        ten = s.get(Coupon, "ten")
        assert (ten.used, ten.spent) == (10, Decimal("299.90"))
        assert s.scalar(select(func.count()).select_from(CouponRedemption)) == 10
        assert s.scalar(select(func.count()).select_from(Order)) == 10


def test_twenty_concurrent_redemptions_stop_exactly_at_their_campaigns_budget(market):
    """A campaign's budget (50 CNY) fits five of its 10 CNY coupons, split over two coupons with no
    budget or use limit of their own, granted to twenty shoppers: granting checks the budget only as
    it stands, so redemption's conditional UPDATE on the campaign's row is what holds the cap. Twenty
    at once: exactly five pass, the rest are refused, and the campaign's spend is the budget to the fen."""
    from commerce.campaigns import Campaign
    from commerce.services import campaigns as cmp

    n = 20
    _add_shoppers(market, n)
    with transaction(market) as s:
        cmp.create_campaign(
            s, cmp.CampaignInput("cap", "site", "50", NOW, NOW + timedelta(days=7), "0", campaign_id="B")
        )
        for arm in ("B-a", "B-b"):
            coupons.create_coupon(
                s,
                coupons.CouponInput("amount_off", "10", coupon_id=arm, campaign_id="B", requires_grant=True),
            )
        cmp.set_audience(s, "B", [(f"c{i}", "B-a" if i % 2 else "B-b") for i in range(n)])
        cmp.schedule_campaign(s, "B", at=NOW)
        cmp.start_campaign(s, "B", at=NOW)

    def go(i):
        with transaction(market) as s:
            arm = "B-a" if i % 2 else "B-b"
            return checkout(s, f"c{i}", [CartLine("p_tea", 1)], coupon_id=arm, at=NOW).discount_total

    ok, refused = run_concurrently(go, n)
    assert ok == [Decimal("10.00")] * 5 and refused == ["campaign_budget_exhausted"] * (n - 5)
    with market() as s:
        assert s.get(Campaign, "B").spent == Decimal("50.00")
        assert s.get(Coupon, "B-a").spent + s.get(Coupon, "B-b").spent == Decimal("50.00")
        assert s.scalar(select(func.sum(CouponRedemption.amount))) == Decimal("50.00")
        assert s.scalar(select(func.count()).select_from(Order)) == 5


def test_per_shopper_limit_holds_under_concurrency(market):
    with transaction(market) as s:
        coupons.create_coupon(
            s, coupons.CouponInput("amount_off", "5", coupon_id="twice", per_shopper_limit=2)
        )

    def go(i):
        with transaction(market) as s:
            return checkout(s, "s1", [CartLine("p_tea", 1)], coupon_id="twice", at=NOW).order_id

    ok, refused = run_concurrently(go, 20)
    assert len(ok) == 2 and set(refused) == {"coupon_shopper_limit"}


def test_annual_limit_holds_under_concurrent_orders(market):
    """One person, many accounts, 50 orders of 4,995 CNY paid at once: at most 5 fit in 26,000."""
    _add_shoppers(market, WORKERS, same_person=True)
    with transaction(market) as s:
        catalog.set_stock(s, "p_tea", "HZ-1", 5000)

    def buy(i):
        with transaction(market) as s:
            order = checkout(s, f"c{i}", [CartLine("p_tea", 50)], at=NOW)
            orders.pay_order(s, order.order_id, f"pay-{i}", at=NOW)
            return order.identity_digest

    ok, refused = run_concurrently(buy)
    assert len(ok) == 5 and set(refused) == {"annual_limit_exceeded"}
    with market() as s:
        assert orders.annual_spend(s, ok[0], 2026) == Decimal("24975.00")
        assert s.scalar(select(func.count()).select_from(Order)) == 5
