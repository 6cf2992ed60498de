"""At most one live campaign coupon per shopper, held by the database: scheduling refuses a campaign
whose treated audience overlaps another live campaign's, also when both are scheduled at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from commerce.campaigns import Campaign
from commerce.db import transaction
from commerce.errors import Conflict
from commerce.services import campaigns as cmp
from commerce.services.coupons import CouponInput, create_coupon
from tests.commerce.conftest import NOW
from tests.commerce.test_concurrency import run_concurrently

DAY = timedelta(days=1)


def _draft(session, cid, start, end, audience, share="0"):
    cmp.create_campaign(session, cmp.CampaignInput(cid, "site", "100", start, end, share, campaign_id=cid))
    create_coupon(session, CouponInput("amount_off", "5", coupon_id=f"{cid}-5", campaign_id=cid))
    cmp.set_audience(
        session, cid, [(s, "control" if arm == "control" else f"{cid}-5") for s, arm in audience]
    )


def test_scheduling_refuses_a_shopper_a_second_live_coupon(market):
    """A treats s0 (s1 its holdout). B overlaps A and treats s0: refused, and stays a draft. C overlaps
    A but treats only s2 and A's holdout s1 (who holds no coupon): scheduled. D starts as A ends."""
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t"), ("s1", "control")], share="0.5")
        _draft(s, "B", NOW + 5 * DAY, NOW + 10 * DAY, [("s0", "t"), ("s2", "t")])
        _draft(s, "C", NOW + 5 * DAY, NOW + 10 * DAY, [("s1", "t"), ("s2", "t")])
        _draft(s, "D", NOW + 7 * DAY, NOW + 14 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
    with pytest.raises(Conflict) as err, transaction(market) as s:
        cmp.schedule_campaign(s, "B", at=NOW)
    assert err.value.code == "live_coupon_held" and "['s0']" in str(err.value)
    with transaction(market) as s:
        assert s.get(Campaign, "B").status == "draft"
        cmp.schedule_campaign(s, "C", at=NOW)
        cmp.schedule_campaign(s, "D", at=NOW)
        assert cmp.live_coupon_holders(s, s.get(Campaign, "B")) == {"s0", "s1", "s2"}


def test_a_shopper_holds_one_live_coupon_however_many_campaigns_are_scheduled_at_once(market):
    """Ten overlapping drafts all treat s0 and are scheduled at the same moment: exactly one wins."""
    n = 10
    with transaction(market) as s:
        for i in range(n):
            _draft(s, f"K{i}", NOW + i * DAY, NOW + (i + 20) * DAY, [("s0", "t")])

    def schedule(i):
        with transaction(market) as s:
            return cmp.schedule_campaign(s, f"K{i}", at=NOW).campaign_id

    ok, refused = run_concurrently(schedule, n)
    assert len(ok) == 1 and refused == ["live_coupon_held"] * (n - 1)


def test_completing_a_campaign_ends_its_coupons_so_it_holds_no_live_coupon(market):
    """A's coupon had no end of its own: after A completes, s0 can no longer redeem it (it was a live
    coupon a later campaign could not see), the listing drops it, and B may give s0 a coupon."""
    from commerce.coupons import Coupon
    from commerce.errors import ValidationError
    from commerce.services.checkout import CartLine, checkout
    from commerce.services.coupons import eligible_coupons

    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t")])
        s.get(Coupon, "A-5").requires_grant = True
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
        assert [c.coupon_id for c in eligible_coupons(s, "s0", NOW + DAY)] == ["A-5"]
        cmp.complete_campaign(s, "A", at=NOW + 2 * DAY)
        assert s.get(Coupon, "A-5").ends_at == NOW + 2 * DAY
        assert eligible_coupons(s, "s0", NOW + 3 * DAY) == []
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="A-5", at=NOW + 3 * DAY)
    assert err.value.code == "coupon_expired"
    with transaction(market) as s:
        _draft(s, "B", NOW + 3 * DAY, NOW + 9 * DAY, [("s0", "t")])
        assert cmp.schedule_campaign(s, "B", at=NOW + 3 * DAY).status == "scheduled"


def test_concurrent_plans_of_one_draft_leave_one_audience(market):
    """Ten audiences stored at once on the same draft (two marketers, a double click): the draft ends
    with exactly one of them, never their union (each replaces the audience under the campaign's lock)."""
    from commerce.campaigns import CampaignMember
    from commerce.services import shoppers

    n = 10
    with transaction(market) as s:
        for i in range(3 * n):
            shoppers.create_shopper(s, f"c{i}", "Shanghai")
        _draft(s, "P", NOW, NOW + 7 * DAY, [("s0", "t")], share="0.3")

    def store(i):
        audience = [(f"c{3 * i}", "P-5"), (f"c{3 * i + 1}", "P-5"), (f"c{3 * i + 2}", "control")]
        with transaction(market) as s:
            return cmp.set_audience(s, "P", audience)

    ok, refused = run_concurrently(store, n)
    assert ok == [3] * n and refused == []
    with market() as s:
        members = sorted(
            s.scalars(select(CampaignMember.shopper_id).where(CampaignMember.campaign_id == "P"))
        )
    assert len(members) == 3 and len({int(m[1:]) // 3 for m in members}) == 1, members
