"""A coupon whose window opens later may be granted ahead of its start (scheduling does it for a campaign
launched early; a hand grant may too) but is not redeemed before it opens: not at checkout, not by
`redeem` itself (its conditional UPDATE holds the window, as it holds the grant), not offered by the
storefront. A completed campaign's coupon that never started is not granted at all. SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from commerce.db import transaction
from commerce.errors import InvalidState, ValidationError
from commerce.services import campaigns as cmp
from commerce.services.checkout import CartLine, checkout
from commerce.services.coupons import (
    CouponInput,
    create_coupon,
    eligible_coupons,
    end_coupon,
    grant_coupon,
    redeem,
)
from tests.commerce.conftest import NOW
from tests.commerce.test_campaign_contacts import _completed_before_its_window, _draft

DAY = timedelta(days=1)


def _buy(s, shopper, coupon, at):
    return checkout(s, shopper, [CartLine("p_tea", 1)], coupon_id=coupon, at=at)


def _refused(market, code, call, *args, **kwargs):
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        call(s, *args, **kwargs)
    assert err.value.code == code


def test_a_coupon_granted_by_hand_before_its_start_is_not_redeemed_before_it(market):
    with transaction(market) as s:
        create_coupon(
            s, CouponInput("amount_off", "5", coupon_id="soon", requires_grant=True, starts_at=NOW + DAY)
        )
        assert grant_coupon(s, "soon", ["s0"], at=NOW) == 1
    with market() as s:
        assert eligible_coupons(s, "s0", NOW) == []
    _refused(market, "coupon_not_started", _buy, "s0", "soon", NOW)
    _refused(market, "coupon_not_started", redeem, "soon", "s0", Decimal("5"), at=NOW)  # was taken
    with transaction(market) as s:
        assert [c.coupon_id for c in eligible_coupons(s, "s0", NOW + DAY)] == ["soon"]
        assert _buy(s, "s0", "soon", NOW + DAY).discount_total == 5


def test_a_coupon_ended_after_the_checkout_checked_it_is_not_redeemed(market):
    """`redeem` at a time the coupon has ended by (an end between checkout's check and the UPDATE)."""
    with transaction(market) as s:
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="c1"))
        end_coupon(s, "c1", at=NOW)
    _refused(market, "coupon_expired", redeem, "c1", "s0", Decimal("5"), at=NOW)  # was taken


def test_a_campaign_launched_early_grants_ahead_of_its_window_redeemed_only_in_it(market):
    """A (window from day 10) is launched now: its audience (s0) holds its coupon from now, and a hand
    grant while it runs (s2) is allowed too; neither is redeemed before day 10."""
    with transaction(market) as s:
        _draft(s, "A", NOW + 10 * DAY, NOW + 17 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
        assert grant_coupon(s, "A-5", ["s2"], at=NOW + DAY) == 1
    for shopper in ("s0", "s2"):
        _refused(market, "coupon_not_started", _buy, shopper, "A-5", NOW + 9 * DAY)
        _refused(market, "coupon_not_started", redeem, "A-5", shopper, Decimal("5"), at=NOW + 9 * DAY)
        with transaction(market) as s:
            assert _buy(s, shopper, "A-5", NOW + 10 * DAY).discount_total == 5


@pytest.mark.parametrize("at", [NOW + 2 * DAY, NOW + 12 * DAY], ids=["before-its-window", "in-its-window"])
def test_a_completed_campaigns_coupon_that_never_started_is_not_granted(market, at):
    _completed_before_its_window(market)
    with pytest.raises(InvalidState) as err, transaction(market) as s:
        grant_coupon(s, "A-5", ["s2"], at=at)
    assert err.value.code == "campaign_not_running"
    _refused(market, "coupon_expired", _buy, "s0", "A-5", at)
