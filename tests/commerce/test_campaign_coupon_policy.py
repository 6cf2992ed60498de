"""The contact policy's remaining gaps (issue 16, item 4), on SQLite and PostgreSQL: a campaign's coupon
is grant-only at redemption whatever its stored flag says, a hand grant counts against the frequency
cap, a hand grant of a coupon of no campaign does not wait for campaign scheduling, and a campaign
completed before its window opens leaves no coupon live in it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from commerce.coupons import Coupon, CouponGrant
from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.services import campaigns as cmp
from commerce.services.checkout import CartLine, checkout
from commerce.services.coupons import eligible_coupons, redeem
from tests.commerce.conftest import NOW
from tests.commerce.test_campaign_contacts import _draft

DAY = timedelta(days=1)


def _running(market, cid="A", audience=(("s0", "t"), ("s1", "control")), start=NOW, days=7):
    with transaction(market) as s:
        _draft(s, cid, start, start + days * DAY, list(audience), share="0.5")
        cmp.schedule_campaign(s, cid, at=start)
        cmp.start_campaign(s, cid, at=start)


def test_a_campaign_coupon_stored_open_is_still_grant_only_at_redemption(market):
    """A's coupon was stored without requires_grant (before that was refused; migration 0029 fixes
    the stored ones): s1 (A's holdout) and s2 (outside A) may not use it, neither through checkout, nor
    through `redeem` itself, nor does the storefront offer it to them; s0, granted it, may."""
    _running(market)
    with transaction(market) as s:
        s.execute(update(Coupon).where(Coupon.coupon_id == "A-5").values(requires_grant=False))
    for shopper in ("s1", "s2"):
        with pytest.raises(ValidationError) as err, transaction(market) as s:
            checkout(s, shopper, [CartLine("p_tea", 1)], coupon_id="A-5", at=NOW + DAY)
        assert err.value.code == "coupon_not_granted"
        with pytest.raises(ValidationError) as err, transaction(market) as s:
            redeem(s, "A-5", shopper, Decimal("5"))
        assert err.value.code == "coupon_not_granted"
        with market() as s:
            assert eligible_coupons(s, shopper, NOW + DAY) == []
    with transaction(market) as s:
        assert [c.coupon_id for c in eligible_coupons(s, "s0", NOW + DAY)] == ["A-5"]
        order = checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="A-5", at=NOW + DAY)
        assert order.discount_total == 5
    with market() as s:
        assert s.get(Coupon, "A-5").used == 1 and s.get(cmp.Campaign, "A").spent == 5
        assert s.scalars(select(CouponGrant.shopper_id)).all() == ["s0"]
