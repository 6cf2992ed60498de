"""The persistent cart: quantities, cart events, quote = checkout, partial checkout by fulfillment mode."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from commerce.db import transaction
from commerce.errors import NotFound, ValidationError
from commerce.events import BehaviorEvent
from commerce.services import cart, coupons
from tests.commerce.conftest import NOW


def test_cart_quote_and_checkout(market):
    with transaction(market) as s:
        cart.set_item(s, "s0", "p_cream", 1, at=NOW, session_id="sess1")
        cart.set_item(s, "s0", "p_cream", 2, at=NOW)  # +1 more
        cart.set_item(s, "s0", "p_tea", 3, at=NOW)
        cart.set_item(s, "s0", "p_mail", 1, at=NOW)
        items = cart.set_item(s, "s0", "p_tea", 1, at=NOW)  # lowering logs nothing
        assert [(i.product_id, i.quantity) for i in items] == [("p_cream", 2), ("p_mail", 1), ("p_tea", 1)]
        coupons.create_coupon(s, coupons.CouponInput("amount_off", "50", coupon_id="c50", min_spend="300"))
    with market() as s:
        events = s.scalars(select(BehaviorEvent).order_by(BehaviorEvent.event_id)).all()
        assert sorted((e.event_type, e.product_id, e.quantity) for e in events) == [
            ("cart", "p_cream", 1),
            ("cart", "p_cream", 1),
            ("cart", "p_mail", 1),
            ("cart", "p_tea", 3),
        ]
    with market() as s, pytest.raises(ValidationError) as err:
        cart.quote_cart(s, "s0")
    assert err.value.code == "mixed_fulfillment"
    with market() as s:
        q = cart.quote_cart(s, "s0", product_ids=["p_cream", "p_tea"], coupon_id="c50", at=NOW)
    assert q.discount_total == Decimal("50.00") and q.total == sum(line.total for line in q.lines)
    with transaction(market) as s:
        order = cart.checkout_cart(s, "s0", product_ids=["p_cream", "p_tea"], coupon_id="c50", at=NOW)
        assert (order.goods_total, order.discount_total, order.tax_total, order.total) == (
            q.goods_total,
            q.discount_total,
            q.tax_total,
            q.total,
        )
        assert [(line.product_id, line.tax) for line in order.lines] == [
            (x.product_id, x.tax) for x in q.lines
        ]
        assert [i.product_id for i in cart.get_cart(s, "s0")] == ["p_mail"]
        cart.set_item(s, "s0", "p_mail", 0)
        assert cart.get_cart(s, "s0") == []


def test_cart_refuses_bad_items(market):
    with transaction(market) as s:
        with pytest.raises(ValidationError) as err:
            cart.set_item(s, "s0", "p_bad", 1)  # suspended merchant
        assert err.value.code == "not_sellable"
        with pytest.raises(NotFound):
            cart.set_item(s, "s0", "nope", 1)
        with pytest.raises(ValidationError):
            cart.set_item(s, "s0", "p_tea", -1)
        with pytest.raises(ValidationError) as err:
            cart.checkout_cart(s, "s0")
        assert err.value.code == "empty_cart"
        with pytest.raises(ValidationError) as err:
            cart.quote_cart(s, "s0", product_ids=["p_tea"])
        assert err.value.code == "not_in_cart"
        assert cart.get_cart(s, "s0") == []
