"""A campaign's coupons (issue 16, contact policy): a coupon names only a stored campaign (the service
says so, the foreign key holds it), a campaign's coupon is grant-only, and a hand grant never gives a
shopper a second live campaign coupon nor reaches the campaign's holdout; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from commerce.campaigns import Campaign
from commerce.coupons import Coupon, CouponGrant
from commerce.db import transaction
from commerce.errors import Conflict, InvalidState, NotFound, ValidationError
from commerce.services import campaigns as cmp
from commerce.services import shoppers
from commerce.services.coupons import CouponInput, create_coupon, grant_coupon, update_coupon
from tests.commerce.conftest import NOW
from tests.commerce.test_campaign_contacts import _draft
from tests.commerce.test_concurrency import run_concurrently

DAY = timedelta(days=1)


def _grants(market) -> set[tuple[str, str]]:
    with market() as s:
        return set(s.execute(select(CouponGrant.coupon_id, CouponGrant.shopper_id)).all())


def test_a_coupon_names_only_a_stored_campaign(market):
    """Creating or editing a coupon to name an unknown campaign is refused (404 `campaign_not_found`),
    and the foreign key refuses it below the service too."""
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + DAY, [("s0", "t")])
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="open"))
    with pytest.raises(NotFound) as err, transaction(market) as s:
        create_coupon(
            s, CouponInput("amount_off", "5", coupon_id="x", campaign_id="ghost", requires_grant=True)
        )
    assert err.value.code == "campaign_not_found"
    with pytest.raises(NotFound) as err, transaction(market) as s:
        update_coupon(s, "A-5", campaign_id="ghost")
    assert err.value.code == "campaign_not_found"
    with pytest.raises(IntegrityError), transaction(market) as s:
        s.add(Coupon(coupon_id="raw", kind="amount_off", value=5, campaign_id="ghost", requires_grant=True))
    with market() as s:
        assert s.get(Coupon, "x") is None and s.get(Coupon, "raw") is None
        assert s.get(Coupon, "A-5").campaign_id == "A"


@pytest.mark.parametrize(
    "write",
    [
        lambda s: create_coupon(s, CouponInput("amount_off", "5", coupon_id="x", campaign_id="A")),
        lambda s: update_coupon(s, "A-5", requires_grant=False),
        lambda s: update_coupon(s, "open", campaign_id="A"),  # an open coupon made a campaign's
    ],
    ids=["create", "open-up", "join"],
)
def test_a_campaign_coupon_must_require_a_grant(market, write):
    """A campaign's coupon anyone could use reaches its holdout and other campaigns' shoppers: every
    write that would store one is refused (`invalid_arm`, 422), a draft's as much as a scheduled one's."""
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + DAY, [("s0", "t")])
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="open"))
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        write(s)
    assert err.value.code == "invalid_arm"
    with market() as s:
        assert s.scalars(select(Coupon.coupon_id).where(Coupon.campaign_id == "A")).all() == ["A-5"]
        assert s.get(Coupon, "A-5").requires_grant is True


def test_hand_grants_reach_no_holdout_and_give_no_second_live_coupon(market):
    """A runs (s0 treated, s1 its holdout). Its coupon by hand: to s1 (the holdout) refused, to a
    shopper another arm of A treats refused, to s2 who is treated by B (scheduled, overlapping A)
    refused; none is stored, nor a coupon of A valid beyond A's window. To s2 once B is over
    (completed, its coupon ended) it is given, and s0 re-granted their own arm gets nothing new. A
    draft's coupon is given by nobody's hand."""
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t"), ("s1", "control")], share="0.5")
        create_coupon(
            s, CouponInput("amount_off", "9", coupon_id="A-9", campaign_id="A", requires_grant=True)
        )
        _draft(s, "B", NOW + 5 * DAY, NOW + 10 * DAY, [("s2", "t")])
        _draft(s, "D", NOW + 20 * DAY, NOW + 21 * DAY, [("s2", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.schedule_campaign(s, "B", at=NOW)
    with pytest.raises(InvalidState) as err, transaction(market) as s:
        grant_coupon(s, "A-5", ["s2"], at=NOW)  # scheduled, not launched: its coupon has no window yet
    assert err.value.code == "campaign_not_running"
    with transaction(market) as s:
        cmp.start_campaign(s, "A", at=NOW)
    before = _grants(market)
    assert before == {("A-5", "s0")}
    with transaction(market) as s:  # created after the launch, which bounded A's coupons to its window
        create_coupon(
            s, CouponInput("amount_off", "7", coupon_id="A-7", campaign_id="A", requires_grant=True)
        )
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        grant_coupon(s, "A-7", ["s2"], at=NOW + DAY)  # valid for ever: live beyond A's window
    assert err.value.code == "invalid_window"
    for coupon_id, shopper, code in [
        ("A-5", "s1", "holdout_member"),
        ("A-9", "s0", "live_coupon_held"),  # A already gives s0 its A-5
        ("A-5", "s2", "live_coupon_held"),  # B is to give s2 its coupon, overlapping A
        ("D-5", "s0", "campaign_not_running"),
    ]:
        with pytest.raises(Conflict) as err, transaction(market) as s:
            grant_coupon(s, coupon_id, ["s2", shopper], at=NOW + DAY)  # all or nothing
        assert err.value.code == code, (coupon_id, shopper)
        assert _grants(market) == before
    with transaction(market) as s:
        cmp.start_campaign(s, "B", at=NOW + 5 * DAY)
        cmp.complete_campaign(s, "B", at=NOW + 6 * DAY)
        assert grant_coupon(s, "A-5", ["s0", "s2"], at=NOW + 6 * DAY) == 1
        grant = s.scalar(
            select(CouponGrant).where(CouponGrant.shopper_id == "s2", CouponGrant.coupon_id == "A-5")
        )
        assert grant.campaign_id == "A"  # a hand grant carries its coupon's campaign


def test_a_hand_granted_coupon_is_live_for_scheduling_and_planning(market):
    """s2 got A's coupon by hand while A runs: B (overlapping A) may not treat s2 (the planner leaves
    s2 out, scheduling refuses), and a coupon of B may not be given to s2 by hand once B runs either."""
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
        grant_coupon(s, "A-5", ["s2"], at=NOW)
        _draft(s, "B", NOW + 5 * DAY, NOW + 10 * DAY, [("s1", "t"), ("s2", "t")])
        assert cmp.live_coupon_holders(s, s.get(Campaign, "B")) == {"s0", "s2"}
    with pytest.raises(Conflict) as err, transaction(market) as s:
        cmp.schedule_campaign(s, "B", at=NOW)
    assert err.value.code == "live_coupon_held" and "['s2']" in str(err.value)
    with transaction(market) as s:
        cmp.set_audience(s, "B", [("s1", "B-5")])
        cmp.schedule_campaign(s, "B", at=NOW)
        cmp.start_campaign(s, "B", at=NOW + 5 * DAY)
    with pytest.raises(Conflict) as err, transaction(market) as s:
        grant_coupon(s, "B-5", ["s2"], at=NOW + 5 * DAY)
    assert err.value.code == "live_coupon_held"


def test_a_hand_grant_and_a_schedule_at_once_never_give_two_live_coupons(market):
    """A runs; A's coupon to s2 by hand and the schedule of B (overlapping, treating s2) at the same
    moment, five rounds: exactly one of the two wins each time (grants and schedules are serialized,
    so neither checks before the other commits)."""
    rounds = 5
    with transaction(market) as s:
        for r in range(rounds):
            start = NOW + 20 * r * DAY
            _draft(s, f"A{r}", start, start + 7 * DAY, [("s0", "t")])
            cmp.schedule_campaign(s, f"A{r}", at=NOW)
            cmp.start_campaign(s, f"A{r}", at=start)
            _draft(s, f"B{r}", start + DAY, start + 2 * DAY, [("s2", "t")])

    for r in range(rounds):

        def race(i, r=r):
            with transaction(market) as s:
                if i == 0:
                    return grant_coupon(s, f"A{r}-5", ["s2"], at=NOW + 20 * r * DAY)
                return cmp.schedule_campaign(s, f"B{r}", at=NOW).status

        ok, refused = run_concurrently(race, 2)
        assert len(ok) == 1 and refused == ["live_coupon_held"], (r, ok, refused)
    with market() as s:
        scheduled = s.scalar(select(func.count()).select_from(Campaign).where(Campaign.status == "scheduled"))
        by_hand = s.scalar(
            select(func.count()).select_from(CouponGrant).where(CouponGrant.shopper_id == "s2")
        )
    assert scheduled + by_hand == rounds


def test_hand_grants_of_overlapping_campaigns_at_once_give_one_coupon(market):
    """Ten overlapping campaigns run (each treats a shopper of its own); each one's coupon to s2 by
    hand, all at once: exactly one is given."""
    n = 10
    with transaction(market) as s:
        for i in range(n):
            shoppers.create_shopper(s, f"t{i}", "Zhejiang")
            _draft(s, f"K{i}", NOW, NOW + 7 * DAY, [(f"t{i}", "t")])
            cmp.schedule_campaign(s, f"K{i}", at=NOW)
            cmp.start_campaign(s, f"K{i}", at=NOW)

    def grant(i):
        with transaction(market) as s:
            return grant_coupon(s, f"K{i}-5", ["s2"], at=NOW)

    ok, refused = run_concurrently(grant, n)
    assert ok == [1] and refused == ["live_coupon_held"] * (n - 1)
    assert len([c for c, shopper in _grants(market) if shopper == "s2"]) == 1


def test_a_shopper_given_one_coupon_of_a_campaign_by_hand_gets_no_second_of_it(market):
    """A runs with two arms' coupons; s2, outside its audience, got A-5 by hand: A-9 by hand as well is
    refused (the check looked only at A's audience and at other campaigns), and a re-grant of A-5 still
    gives nothing new without refusing."""
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t")])
        create_coupon(
            s, CouponInput("amount_off", "9", coupon_id="A-9", campaign_id="A", requires_grant=True)
        )
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)  # bounds to A's window
        assert grant_coupon(s, "A-5", ["s2"], at=NOW + DAY) == 1
    with pytest.raises(Conflict) as err, transaction(market) as s:
        grant_coupon(s, "A-9", ["s2"], at=NOW + DAY)
    assert err.value.code == "live_coupon_held"
    assert _grants(market) == {("A-5", "s0"), ("A-5", "s2")}
    with transaction(market) as s:
        assert grant_coupon(s, "A-5", ["s2"], at=NOW + 2 * DAY) == 0
