"""Checkout: prices, coupons, line-by-line tax, customs limits, events; bad input changes nothing."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from commerce.catalog import Stock
from commerce.coupons import Coupon, CouponRedemption
from commerce.db import transaction
from commerce.errors import LimitExceeded, NotFound, OutOfStock, ValidationError
from commerce.events import BehaviorEvent
from commerce.identity import Keyring
from commerce.orders import Order
from commerce.services import coupons, orders, pricing
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import NOW


def _stock(factory, product_id):
    with factory() as s:
        return s.execute(
            select(func.sum(Stock.quantity), func.sum(Stock.reserved)).where(Stock.product_id == product_id)
        ).one()


def _counts(factory):
    with factory() as s:
        return (
            s.scalar(select(func.count()).select_from(Order)),
            s.scalar(select(func.count()).select_from(CouponRedemption)),
            s.scalar(select(func.coalesce(func.sum(Stock.reserved), 0))),
            s.scalar(select(func.coalesce(func.sum(Coupon.used), 0))),
        )


def test_checkout_taxes_each_line_and_totals_add_up(market):
    with transaction(market) as s:
        order = checkout(s, "s0", [CartLine("p_cream", 2), CartLine("p_tea", 3)], at=NOW)
        assert order.status == "pending_payment"
        cream, tea = order.lines
        # cosmetics: 600 x (0.13 + 0.15) / 0.85 x 0.7 = 138.352... -> 138.35
        assert cream.gross == Decimal("600.00") and cream.tax == Decimal("138.35")
        # food: 299.70 x 0.13 x 0.7 = 27.2727 -> 27.27 (9.1%)
        assert tea.gross == Decimal("299.70") and tea.tax == Decimal("27.27")
        assert order.tax_total == Decimal("165.62")
        assert order.total == sum(line.total for line in order.lines) == Decimal("1065.32")
        assert order.tax_regime == "cross_border" and order.partner_id == "cainiao-bonded"
        assert order.delivery_earliest == NOW + timedelta(days=1)
        assert cream.commission == Decimal("48.00")  # 600 x 0.08
    assert _stock(market, "p_cream") == (5, 2)


def test_coupon_discount_is_allocated_and_taxed_on_the_net(market):
    with transaction(market) as s:
        coupons.create_coupon(
            s,
            coupons.CouponInput(
                "percent_off",
                "0.10",
                cap="50",
                min_spend="100",
                coupon_id="c10",
                scope_type="category",
                scope_id="beauty",
            ),
        )
    with transaction(market) as s:
        order = checkout(s, "s0", [CartLine("p_cream", 1), CartLine("p_tea", 1)], coupon_id="c10", at=NOW)
        cream, tea = order.lines
        assert cream.discount == Decimal("30.00") and tea.discount == Decimal("0.00")  # only beauty in scope
        assert cream.tax == Decimal("62.26")  # 270 x 0.28 / 0.85 x 0.7 = 62.258...
        assert order.discount_total == Decimal("30.00")
        assert order.total == order.goods_total - order.discount_total + order.tax_total
    with market() as s:
        c = s.get(Coupon, "c10")
        assert (c.used, c.spent) == (1, Decimal("30.00"))


def test_season_and_flash_sale_set_the_price(market):
    with transaction(market) as s:
        pricing.create_season(s, "d11", "Double 11", NOW - timedelta(days=1), NOW + timedelta(days=1), "0.20")
        pricing.add_price_window(s, "p_tea", "59.00", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    with transaction(market) as s:
        order = checkout(s, "s0", [CartLine("p_cream", 1), CartLine("p_tea", 1)], at=NOW)
        assert [line.unit_price for line in order.lines] == [Decimal("240.00"), Decimal("59.00")]
    with transaction(market) as s:  # after both windows: list price again
        order = checkout(s, "s1", [CartLine("p_tea", 1)], at=NOW + timedelta(days=2))
        assert order.lines[0].unit_price == Decimal("99.90")


def test_single_indivisible_item_over_5000_pays_general_trade_tax(market):
    with transaction(market) as s:
        order = checkout(s, "s0", [CartLine("p_watch", 1)], at=NOW)
        # tariff 600 + VAT (6600 x 0.13 = 858) = 1458.00
        assert order.tax_regime == "general_trade" and order.tax_total == Decimal("1458.00")
    before = _counts(market)
    with pytest.raises(LimitExceeded) as err, transaction(market) as s:
        checkout(s, "s1", [CartLine("p_watch", 2)], at=NOW)
    assert err.value.code == "order_limit_exceeded"
    with pytest.raises(LimitExceeded), transaction(market) as s:
        checkout(s, "s1", [CartLine("p_watch", 1), CartLine("p_tea", 1)], at=NOW)
    assert _counts(market) == before


def test_payment_logs_purchase_and_redeem_events_and_export_matches_contract(market, tmp_path):
    import pandas as pd

    from commerce.services.campaigns import CampaignInput, create_campaign
    from commerce.services.events import export_events

    with transaction(market) as s:
        create_campaign(
            s, CampaignInput("c", "site", "100", NOW, NOW + timedelta(days=7), campaign_id="camp1")
        )
        coupons.create_coupon(
            s,
            coupons.CouponInput(
                "amount_off", "20", coupon_id="c20", campaign_id="camp1", requires_grant=True
            ),
        )
        coupons.grant_audience(s, "c20", ["s0"], campaign_id="camp1", channel="site", at=NOW)
        order = checkout(s, "s0", [CartLine("p_tea", 2)], coupon_id="c20", at=NOW)
    with transaction(market) as s:
        orders.pay_order(s, order.order_id, "pay-1", at=NOW)
    with market() as s:
        kinds = sorted(s.scalars(select(BehaviorEvent.event_type)))
        assert kinds == ["coupon_grant", "coupon_redeem", "purchase"]
        purchase = s.scalar(select(BehaviorEvent).where(BehaviorEvent.event_type == "purchase"))
        assert purchase.value == pytest.approx(179.80) and purchase.quantity == 2
        paths = export_events(s, tmp_path / "events")
    df = pd.read_parquet(tmp_path / "events")
    assert len(paths) == 1 and len(df) == 3
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"
    assert list(df.columns) == [
        "event_id",
        "ts",
        "shopper_id",
        "product_id",
        "event_type",
        "quantity",
        "value",
        "session_id",
        "campaign_id",
        "coupon_id",
        "query",
    ]
    assert df.loc[df.event_type == "coupon_redeem", "campaign_id"].item() == "camp1"


BAD_CHECKOUTS = [
    ({"lines": [CartLine("nope", 1)]}, ValidationError, "not_sellable"),  # as p_bad: no existence oracle
    ({"lines": [CartLine("p_bad", 1)]}, ValidationError, "not_sellable"),
    ({"lines": [CartLine("p_tea", 0)]}, ValidationError, "invalid_quantity"),
    ({"lines": []}, ValidationError, "empty_cart"),
    ({"lines": [CartLine("p_tea", 1), CartLine("p_mail", 1)]}, ValidationError, "mixed_fulfillment"),
    ({"lines": [CartLine("p_cream", 6)]}, OutOfStock, "out_of_stock"),
    ({"lines": [CartLine("p_tea", 51)]}, LimitExceeded, "order_limit_exceeded"),
    ({"lines": [CartLine("p_tea", 1)], "coupon_id": "c_expired"}, ValidationError, "coupon_expired"),
    ({"lines": [CartLine("p_tea", 1)], "coupon_id": "c_cosm"}, ValidationError, "coupon_out_of_scope"),
    ({"lines": [CartLine("p_cream", 1)], "coupon_id": "c_min"}, ValidationError, "coupon_min_spend"),
    ({"lines": [CartLine("p_cream", 1)], "coupon_id": "c_grant"}, ValidationError, "coupon_not_granted"),
    ({"lines": [CartLine("p_tea", 1)], "shopper_id": "ghost"}, NotFound, "shopper_not_found"),
    ({"lines": [CartLine("p_tea", 1)], "shopper_id": "noid"}, ValidationError, "identity_required"),
]


def test_bad_checkouts_are_refused_and_change_nothing(market):
    from commerce.services import shoppers

    with transaction(market) as s:
        shoppers.create_shopper(s, "noid", "Beijing")
        coupons.create_coupon(
            s,
            coupons.CouponInput("amount_off", "5", coupon_id="c_expired", ends_at=NOW - timedelta(seconds=1)),
        )
        coupons.create_coupon(
            s,
            coupons.CouponInput(
                "amount_off", "5", coupon_id="c_cosm", scope_type="category", scope_id="cosmetics"
            ),
        )
        coupons.create_coupon(s, coupons.CouponInput("amount_off", "5", coupon_id="c_min", min_spend="1000"))
        coupons.create_coupon(
            s, coupons.CouponInput("amount_off", "5", coupon_id="c_grant", requires_grant=True)
        )
    before = _counts(market)
    for kwargs, error, code in BAD_CHECKOUTS:
        kwargs = dict(kwargs)
        shopper_id = kwargs.pop("shopper_id", "s0")
        with pytest.raises(error) as err, transaction(market) as s:
            checkout(s, shopper_id, kwargs.pop("lines"), at=NOW, **kwargs)
        assert err.value.code == code
        assert _counts(market) == before, code


def test_annual_limit_is_per_person_and_returned_on_cancel(market):
    from commerce.services import shoppers
    from tests.commerce.conftest import IDENTITY_KEY, make_id_number

    paid = []
    for _ in range(4):  # 4 x 50 x 99.90 = 19,980
        with transaction(market) as s:
            order = checkout(s, "s0", [CartLine("p_tea", 50)], at=NOW)
            paid.append(orders.pay_order(s, order.order_id, "pay", at=NOW))
    with transaction(market) as s:  # a single item above 5,000 counts too: 25,980
        order = checkout(s, "s0", [CartLine("p_watch", 1)], at=NOW)
        orders.pay_order(s, order.order_id, "pay", at=NOW)
    digest = paid[0].identity_digest
    with market() as s:
        assert orders.annual_spend(s, digest, 2026) == Decimal("25980.00")
    with pytest.raises(LimitExceeded) as err, transaction(market) as s:
        checkout(s, "s0", [CartLine("p_self", 1)], at=NOW)
    assert err.value.code == "annual_limit_exceeded"
    with transaction(market) as s:  # another account of the same person shares the limit
        shoppers.register_identity(s, "s2", "Shopper 0", make_id_number(0), keyring=Keyring(IDENTITY_KEY))
    with pytest.raises(LimitExceeded), transaction(market) as s:
        checkout(s, "s2", [CartLine("p_self", 1)], at=NOW)
    with transaction(market) as s:
        orders.cancel_order(s, paid[0].order_id, "changed my mind")
    with market() as s:
        assert orders.annual_spend(s, digest, 2026) == Decimal("20985.00")
        assert orders.annual_spend(s, digest, 2027) == Decimal("0")
    assert _stock(market, "p_tea") == (200 - 150, 0)
    with transaction(market) as s:
        checkout(s, "s2", [CartLine("p_self", 1)], at=NOW)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    quantities=st.lists(st.integers(0, 4), min_size=3, max_size=3).filter(any),
    percent=st.integers(1, 60),
    cap=st.one_of(st.none(), st.integers(1, 200)),
)
def test_any_checkout_adds_up_line_by_line(market, quantities, percent, cap):
    """Property: whatever the cart and coupon, each line's tax is the formula on its net, rounded to the fen,
    discounts add up to the coupon amount, and the order total is exactly the sum of the line totals."""
    cart = [CartLine(p, q) for p, q in zip(("p_cream", "p_tea", "p_self"), quantities, strict=True) if q]
    with transaction(market) as s:
        coupon = coupons.create_coupon(
            s, coupons.CouponInput("percent_off", Decimal(percent) / 100, cap=cap, per_shopper_limit=1000)
        )
        order = checkout(s, "s0", cart, coupon_id=coupon.coupon_id, at=NOW)
        # exact rationals: (vat + ct) / (1 - ct) per product's category
        rates = {
            "p_cream": Fraction("0.28") / Fraction("0.85"),
            "p_tea": Fraction("0.13"),
            "p_self": Fraction("0.13"),
        }
        expected_discount = (order.goods_total * Decimal(percent) / 100).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
        if cap is not None:
            expected_discount = min(expected_discount, Decimal(cap))
        assert order.discount_total == expected_discount
        for line in order.lines:
            net = line.gross - line.discount
            exact_fen = Fraction(net) * rates[line.product_id] * Fraction("0.7") * 100
            assert line.tax == Decimal(math.floor(exact_fen + Fraction(1, 2))) / 100  # half up, to the fen
            assert line.total == net + line.tax and line.discount >= 0
        assert order.total == sum(line.total for line in order.lines)
        assert order.total == order.goods_total - order.discount_total + order.tax_total
        orders.cancel_order(s, order.order_id, "property run")  # give the stock back for the next example
