"""At most one live campaign coupon per shopper and a frequency cap, held by the database: scheduling
refuses a campaign whose treated audience overlaps another live campaign's or would pass the cap,
whatever order campaigns are planned and scheduled in, also when they are scheduled at once."""

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
    create_coupon(
        session, CouponInput("amount_off", "5", requires_grant=True, coupon_id=f"{cid}-5", campaign_id=cid)
    )
    cmp.set_audience(
        session, cid, [(s, "control" if arm == "control" else f"{cid}-5") for s, arm in audience]
    )


def _completed_before_its_window(market):
    """Campaign A (coupon A-5 granted to s0) launched at NOW for days 10-17 and completed on day 1,
    before its coupon ever started."""
    with transaction(market) as s:
        _draft(s, "A", NOW + 10 * DAY, NOW + 17 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
        cmp.complete_campaign(s, "A", at=NOW + DAY)


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

    ok, refused = _schedule_concurrently(market, "K", n)
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


CAP2 = cmp.ContactPolicy(frequency_cap=2, window_days=28)


@pytest.mark.parametrize("order", [("A", "B", "C"), ("C", "B", "A"), ("B", "A", "C")])
def test_frequency_cap_holds_whichever_campaign_is_planned_and_scheduled_first(market, order):
    """Three one-day campaigns 10 days apart treat s0 (cap 2 in 28 days, no two windows overlap): the
    one planned last leaves s0 out, and scheduling refuses it with s0, whether it starts first, in
    the middle or last (before, a campaign starting earlier than those already scheduled saw none)."""
    from marketing.contact_policy import contact_exclusions

    start = {"A": NOW, "B": NOW + 10 * DAY, "C": NOW + 20 * DAY}
    with transaction(market) as s:
        for cid in order:
            _draft(s, cid, start[cid], start[cid] + DAY, [("s0", "t"), ("s1", "t")])
        for cid in order[:2]:
            assert contact_exclusions(s, s.get(Campaign, cid), CAP2)["frequency_cap"] == set()
            cmp.schedule_campaign(s, cid, at=NOW, contact_policy=CAP2)
        last = s.get(Campaign, order[2])
        assert contact_exclusions(s, last, CAP2)["frequency_cap"] == {"s0", "s1"}
        assert contact_exclusions(s, last, cmp.ContactPolicy(frequency_cap=3))["frequency_cap"] == set()
    with pytest.raises(Conflict) as err, transaction(market) as s:
        cmp.schedule_campaign(s, order[2], at=NOW, contact_policy=CAP2)
    assert err.value.code == "frequency_capped" and "['s0', 's1']" in str(err.value)
    with transaction(market) as s:
        cmp.set_audience(s, order[2], [("s2", f"{order[2]}-5")])
        assert cmp.schedule_campaign(s, order[2], at=NOW, contact_policy=CAP2).status == "scheduled"


def test_frequency_cap_counts_contacts_within_the_window_of_either_side_only(market):
    """A running campaign counts at its start whenever it was launched (its grants are not counted
    twice), a completed one too, a coupon granted by hand (by a running campaign to a shopper
    outside its audience) at its grant time; a draft's audience, the holdout and contacts
    28 days or more away do not count. Each hand grant is made while its coupon is valid (an expired
    one is refused): Hand runs for 68 days, so its grant is near New's start and its start far."""
    from commerce.services import shoppers
    from commerce.services.coupons import grant_coupon

    with transaction(market) as s:
        shoppers.create_shopper(s, "s3", "Zhejiang")
        _draft(s, "Run", NOW - 27 * DAY, NOW - 26 * DAY, [("s0", "t"), ("s1", "control")], share="0.5")
        cmp.schedule_campaign(s, "Run", at=NOW - 30 * DAY)
        cmp.start_campaign(s, "Run", at=NOW - 27 * DAY)
        grant_coupon(s, "Run-5", ["s2"], at=NOW - 26 * DAY - DAY / 2)
        _draft(s, "Far", NOW + 28 * DAY, NOW + 29 * DAY, [("s0", "t"), ("s1", "t")])
        cmp.schedule_campaign(s, "Far", at=NOW)
        _draft(s, "Hand", NOW - 40 * DAY, NOW + 28 * DAY, [("s3", "t")])
        cmp.schedule_campaign(s, "Hand", at=NOW - 41 * DAY)
        cmp.start_campaign(s, "Hand", at=NOW - 40 * DAY)  # its start, far away, does not count
        grant_coupon(s, "Hand-5", ["s1"], at=NOW + 27 * DAY)  # its hand grant, near, does
        _draft(s, "Draft", NOW + DAY, NOW + 2 * DAY, [("s0", "t"), ("s1", "t")])
        _draft(s, "New", NOW, NOW + DAY, [("s0", "t"), ("s1", "t")])
        new = s.get(Campaign, "New")
        one = cmp.ContactPolicy(frequency_cap=1, window_days=28)
        assert cmp.frequency_capped(s, new, one) == {"s0", "s1", "s2"}
        assert cmp.frequency_capped(s, new, cmp.ContactPolicy(frequency_cap=2)) == set()
        cmp.complete_campaign(s, "Run", at=NOW - 26 * DAY)
        assert cmp.frequency_capped(s, new, one) == {"s0", "s1", "s2"}
        assert cmp.frequency_capped(s, new, one, treated_only=True) == {"s0", "s1"}
        assert cmp.frequency_capped(s, new, cmp.ContactPolicy(frequency_cap=1, window_days=27)) == {"s2"}


def test_the_frequency_cap_holds_when_campaigns_are_scheduled_at_once(market):
    """Ten one-day campaigns a day apart all treat s0 and are scheduled at the same moment (cap 3 in
    28 days, windows disjoint so the one-live-coupon rule does not bite): exactly three win."""
    n = 10
    with transaction(market) as s:
        for i in range(n):
            _draft(s, f"F{i}", NOW + i * DAY, NOW + i * DAY + DAY / 2, [("s0", "t")])

    ok, refused = _schedule_concurrently(market, "F", n)
    assert len(ok) == 3 and refused == ["frequency_capped"] * (n - 3)


def test_a_campaigns_coupons_are_live_only_inside_its_window_however_it_is_launched(market):
    """A and B do not overlap, so both are scheduled with s0, but a launch happens when someone asks
    (the API launches now): B launched during A, or A left running after its window, used to give s0
    two live coupons (theirs had no end of their own). Launching ends a campaign's coupons within its
    window, so s0 holds one at a time."""
    from commerce.services.coupons import eligible_coupons

    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t")])
        _draft(s, "B", NOW + 7 * DAY, NOW + 14 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.schedule_campaign(s, "B", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "B", at=NOW + DAY)  # early
        assert [c.coupon_id for c in eligible_coupons(s, "s0", NOW + DAY)] == ["A-5"]
        assert [c.coupon_id for c in eligible_coupons(s, "s0", NOW + 8 * DAY)] == ["B-5"]  # A not completed
        assert eligible_coupons(s, "s0", NOW + 14 * DAY) == []


@pytest.mark.parametrize(
    "edit", [{"campaign_id": None}, {"campaign_id": "Other"}, {"requires_grant": False}, {"value": "50"}]
)
def test_an_arm_coupon_cannot_leave_its_campaign_once_scheduled(market, edit):
    """A coupon could be edited until it was granted: moved off a scheduled campaign (its redemptions
    then taken from no budget, or another campaign's) or made usable by anyone before the launch
    granted it. A scheduled audience's coupon is no longer editable; an arm edited while the campaign
    was a draft is refused at scheduling (and again at launch, under the coupon's lock)."""
    from commerce.errors import InvalidState, ValidationError
    from commerce.services.coupons import update_coupon

    with transaction(market) as s:
        _draft(s, "Other", NOW, NOW + DAY, [("s2", "t")])
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t"), ("s1", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        _draft(s, "D", NOW + 7 * DAY, NOW + 14 * DAY, [("s0", "t")])
    if edit == {"requires_grant": False}:  # no campaign's coupon may be open to anyone, scheduled or not
        for coupon_id, code in (("A-5", "coupon_in_use"), ("D-5", "invalid_arm")):  # in use: said first
            with pytest.raises((InvalidState, ValidationError)) as err, transaction(market) as s:
                update_coupon(s, coupon_id, **edit)
            assert err.value.code == code
        return
    with pytest.raises(InvalidState) as err, transaction(market) as s:
        update_coupon(s, "A-5", **edit)
    assert err.value.code == "coupon_in_use"
    with transaction(market) as s:
        update_coupon(s, "D-5", **edit)  # a draft's coupon may still change...
    if "value" in edit:  # ...its terms (plan again to price them)
        with transaction(market) as s:
            assert cmp.schedule_campaign(s, "D", at=NOW + 7 * DAY).status == "scheduled"
        return
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        cmp.schedule_campaign(s, "D", at=NOW)  # ...but it may not leave it nor become anyone's
    assert err.value.code == "invalid_arm" and "['D-5']" in str(err.value)


def test_launch_rechecks_the_arm_coupons_under_their_lock(market):
    """An arm moved off its campaign between scheduling and launch (an edit that raced the schedule,
    or one made in the database) is refused at launch: no coupon is granted outside its budget."""
    from sqlalchemy import update

    from commerce.coupons import Coupon, CouponGrant
    from commerce.errors import ValidationError

    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        s.execute(update(Coupon).where(Coupon.coupon_id == "A-5").values(campaign_id=None))
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        cmp.start_campaign(s, "A", at=NOW)
    assert err.value.code == "invalid_arm" and "['A-5']" in str(err.value)
    with market() as s:
        assert s.get(Campaign, "A").status == "scheduled" and s.scalars(select(CouponGrant)).all() == []


def test_an_arm_coupon_anyone_can_use_cannot_be_stored(market):
    """A campaign coupon that needs no grant would be usable by the holdout and by shoppers holding
    another campaign's coupon: the database refuses storing one (migration 0030), so the draft keeps a
    grant-only arm and schedules."""
    from sqlalchemy.exc import IntegrityError

    from commerce.coupons import Coupon

    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s0", "t"), ("s1", "control")], share="0.5")
    with pytest.raises(IntegrityError, match="campaign_grant_only"), transaction(market) as s:
        s.get(Coupon, "A-5").requires_grant = False
    with transaction(market) as s:
        assert s.get(Coupon, "A-5").requires_grant is True
        assert cmp.schedule_campaign(s, "A", at=NOW).status == "scheduled"


def test_an_arm_edit_racing_the_schedule_never_reaches_the_grants(market):
    """An edit moving an arm off its campaign and the campaign's schedule, at the same moment, then the
    launch: whichever lands first, every coupon granted is its campaign's (five rounds)."""
    from commerce.coupons import Coupon, CouponGrant
    from commerce.errors import DomainError
    from commerce.services.coupons import update_coupon

    rounds = 5
    with transaction(market) as s:
        for r in range(rounds):
            _draft(s, f"R{r}", NOW + 10 * r * DAY, NOW + (10 * r + 1) * DAY, [(f"s{r % 3}", "t")])

    for r in range(rounds):

        def race(i, cid=f"R{r}"):
            with transaction(market) as s:
                if i == 0:
                    return cmp.schedule_campaign(s, cid, at=NOW).status
                return update_coupon(s, f"{cid}-5", campaign_id=None).coupon_id

        run_concurrently(race, 2)
        try:
            with transaction(market) as s:
                cmp.start_campaign(s, f"R{r}", at=NOW + 10 * r * DAY)
        except DomainError:
            pass
    with market() as s:
        grants = s.execute(select(CouponGrant.campaign_id, Coupon.campaign_id).join(Coupon)).all()
        running = set(s.scalars(select(Campaign.campaign_id).where(Campaign.status == "running")))
    assert all(given == owner for given, owner in grants), grants
    assert {given for given, _ in grants} == running  # a launched campaign granted its own coupon


def test_completing_while_a_shopper_redeems_takes_the_locks_in_redemptions_order(market, monkeypatch):
    """Redemption locks the coupon's row, then the campaign's; completing used to lock the campaign's,
    then its coupons', so a completion landing between a redemption's two steps deadlocked on
    PostgreSQL (one of them failed with an error). Here it lands there every time (the redemption
    pauses between the steps): the redemption goes through and the campaign completes after it."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from commerce.services import coupons as coupon_service
    from commerce.services.checkout import CartLine, checkout
    from tests.commerce.test_concurrency import _add_shoppers

    _add_shoppers(market, 1)
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("c0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
    between = threading.Event()
    take = coupon_service._take_campaign_budget

    def paused(session, coupon_id, amount):  # the coupon's row is locked by now
        between.set()
        time.sleep(1.5)  # PostgreSQL's deadlock check runs after 1 s of waiting
        return take(session, coupon_id, amount)

    monkeypatch.setattr(coupon_service, "_take_campaign_budget", paused)

    def redeem():
        with transaction(market) as s:
            return checkout(s, "c0", [CartLine("p_tea", 1)], coupon_id="A-5", at=NOW + DAY).discount_total

    def complete():
        assert between.wait(30)
        with transaction(market) as s:
            return cmp.complete_campaign(s, "A", at=NOW + DAY).status

    with ThreadPoolExecutor(2) as pool:
        redeemed, completed = pool.submit(redeem), pool.submit(complete)
        assert (redeemed.result(), completed.result()) == (5, "completed")
    with market() as s:
        assert s.get(Campaign, "A").spent == 5


def _schedule_concurrently(market, prefix: str, n: int):
    """Schedule drafts prefix0..prefix{n-1} at once, one transaction each: (scheduled, refusal codes)."""

    def schedule(i):
        with transaction(market) as s:
            return cmp.schedule_campaign(s, f"{prefix}{i}", at=NOW).campaign_id

    return run_concurrently(schedule, n)
