"""The contact policy's remaining gaps (issue 16, item 4), on SQLite and PostgreSQL: a campaign's coupon
is grant-only at redemption whatever its stored flag says, a hand grant counts against the frequency
cap, a hand grant of a coupon of no campaign does not wait for campaign scheduling, and a campaign
completed before its window opens leaves no coupon live in it."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from commerce.coupons import Coupon, CouponGrant
from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.services import campaigns as cmp
from commerce.services.checkout import CartLine, checkout
from commerce.services.coupons import eligible_coupons, redeem
from tests.commerce.conftest import NOW
from tests.commerce.test_campaign_contacts import _completed_before_its_window, _draft

DAY = timedelta(days=1)


def _running(market, cid="A", audience=(("s0", "t"), ("s1", "control")), start=NOW, days=7):
    with transaction(market) as s:
        share = "0.5" if any(arm == "control" for _, arm in audience) else "0"
        _draft(s, cid, start, start + days * DAY, list(audience), share=share)
        cmp.schedule_campaign(s, cid, at=start)
        cmp.start_campaign(s, cid, at=start)


def test_a_campaign_coupon_stays_grant_only_at_redemption(market):
    """A's coupon cannot be stored without requires_grant, not even by a raw UPDATE (the database's
    check, migration 0030; 0029 fixed those stored before the service refused them): s1 (A's
    holdout) and s2 (outside A) may not use it, neither through checkout, nor through `redeem`
    itself, nor does the storefront offer it to them; s0, granted it, may."""
    _running(market)
    with pytest.raises(IntegrityError, match="campaign_grant_only"), transaction(market) as s:
        s.execute(update(Coupon).where(Coupon.coupon_id == "A-5").values(requires_grant=False))
    for shopper in ("s1", "s2"):
        with pytest.raises(ValidationError) as err, transaction(market) as s:
            checkout(s, shopper, [CartLine("p_tea", 1)], coupon_id="A-5", at=NOW + DAY)
        assert err.value.code == "coupon_not_granted"
        with pytest.raises(ValidationError) as err, transaction(market) as s:
            redeem(s, "A-5", shopper, Decimal("5"), at=NOW + DAY)
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


def test_a_grant_of_a_coupon_of_no_campaign_does_not_wait_for_a_schedule(market, monkeypatch):
    """PostgreSQL (SQLite's write lock serializes every writer): while a schedule holds campaign
    scheduling's lock (paused inside its checks), a coupon of no campaign is granted by hand at once;
    a running campaign's coupon, which needs the one-live-coupon rule, waits for the schedule's end.
    Before, every hand grant took that lock, so a large schedule held up grants of any coupon."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from commerce.services.coupons import CouponInput, create_coupon, grant_coupon

    if "postgresql" not in str(market.kw["bind"].url):
        pytest.skip("SQLite's BEGIN IMMEDIATE serializes every writer; the lock is PostgreSQL's")
    _running(market, "R", audience=(("s0", "t"),), start=NOW + 30 * DAY)
    with transaction(market) as s:
        _draft(s, "A", NOW, NOW + 7 * DAY, [("s1", "t")])
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="open"))
    paused, release = threading.Event(), threading.Event()
    capped = cmp.frequency_capped

    def pausing(*args, **kwargs):  # the lock is held by now
        paused.set()
        assert release.wait(30)
        return capped(*args, **kwargs)

    monkeypatch.setattr(cmp, "frequency_capped", pausing)

    def schedule():
        with transaction(market) as s:
            return cmp.schedule_campaign(s, "A", at=NOW).status

    def grant(coupon_id, shopper):
        with transaction(market) as s:
            return grant_coupon(s, coupon_id, [shopper], at=NOW + 30 * DAY)

    with ThreadPoolExecutor(3) as pool:
        scheduled = pool.submit(schedule)
        assert paused.wait(30)
        assert pool.submit(grant, "open", "s2").result(timeout=10) == 1  # the schedule is still paused
        by_campaign = pool.submit(grant, "R-5", "s2")
        with pytest.raises(TimeoutError):
            by_campaign.result(timeout=1)
        release.set()
        assert scheduled.result() == "scheduled" and by_campaign.result(timeout=30) == 1


def test_an_open_coupon_joining_a_campaign_while_granted_never_reaches_its_holdout(market):
    """A runs (s1 its holdout). An open coupon is edited to become A's (grant-only, within A's window)
    while it is granted to s1 by hand, at the same moment, five rounds: the grant either lands first
    (the edit is then refused, `coupon_in_use`) or sees A's coupon and refuses s1 (`holdout_member`);
    s1 never holds a coupon of A."""
    from commerce.services.coupons import CouponInput, create_coupon, grant_coupon, update_coupon
    from tests.commerce.test_concurrency import run_concurrently

    _running(market)
    rounds = 5
    with transaction(market) as s:
        for r in range(rounds):
            create_coupon(s, CouponInput("amount_off", "5", coupon_id=f"open{r}", requires_grant=True))
    for r in range(rounds):

        def race(i, r=r):
            with transaction(market) as s:
                if i == 0:
                    return grant_coupon(s, f"open{r}", ["s1"], at=NOW + DAY)
                window = {"starts_at": NOW, "ends_at": NOW + 7 * DAY}
                return update_coupon(s, f"open{r}", campaign_id="A", **window).campaign_id

        ok, refused = run_concurrently(race, 2)
        assert len(ok) == 1 and refused in (["coupon_in_use"], ["holdout_member"]), (ok, refused)
    with market() as s:
        held = s.execute(
            select(CouponGrant.coupon_id)
            .join(Coupon, Coupon.coupon_id == CouponGrant.coupon_id)
            .where(CouponGrant.shopper_id == "s1", Coupon.campaign_id == "A")
        ).all()
    assert held == []


def test_a_hand_grant_counts_against_the_frequency_cap(market):
    """s2 was treated by P (completed, started 10 days before the grant) and given Q's coupon by hand 20
    days after it: with a cap of 2 in 28 days, a grant of A's coupon between them is refused
    (`frequency_capped`, 409, as scheduling refuses), all or nothing; with a cap of 3, or none, it is
    given. s0, who holds A's coupon already (A's audience), is re-granted it without refusal (nothing
    new), though P treated s0 as well. Before, hand grants were never checked against the cap."""
    from commerce.errors import Conflict
    from commerce.services.coupons import grant_coupon

    cap2 = cmp.ContactPolicy(frequency_cap=2, window_days=28)
    with transaction(market) as s:
        _draft(s, "P", NOW - 10 * DAY, NOW - 9 * DAY, [("s0", "t"), ("s2", "t")])
        cmp.schedule_campaign(s, "P", at=NOW - 11 * DAY)
        cmp.start_campaign(s, "P", at=NOW - 10 * DAY)
        cmp.complete_campaign(s, "P", at=NOW - 9 * DAY)
    _running(market, "Q", audience=(("s1", "t"),), start=NOW + 15 * DAY)
    _running(market)  # A: s0 treated, s1 its holdout
    with transaction(market) as s:
        assert grant_coupon(s, "Q-5", ["s2"], at=NOW + 20 * DAY) == 1
        assert grant_coupon(s, "A-5", ["s0"], at=NOW + DAY, contact_policy=cap2) == 0
    for shoppers in (["s2"], ["s0", "s2"]):
        with pytest.raises(Conflict) as err, transaction(market) as s:
            grant_coupon(s, "A-5", shoppers, at=NOW + DAY, contact_policy=cap2)
        assert err.value.code == "frequency_capped" and "['s2']" in str(err.value)
    with market() as s:
        assert s.scalars(select(CouponGrant.shopper_id).where(CouponGrant.coupon_id == "A-5")).all() == ["s0"]
    for policy in (cmp.ContactPolicy(frequency_cap=3), None):
        with transaction(market) as s:
            assert grant_coupon(s, "A-5", ["s2"], at=NOW + DAY, contact_policy=policy) == 1
            s.rollback()
    with transaction(market) as s:  # 28 days or more from both contacts, s2 may be given one again
        assert cmp.frequency_capped(s, s.get(cmp.Campaign, "A"), cap2) == {"s2"}
        s.execute(update(CouponGrant).where(CouponGrant.coupon_id == "Q-5").values(granted_at=NOW + 29 * DAY))
        assert grant_coupon(s, "A-5", ["s2"], at=NOW + DAY, contact_policy=cap2) == 1


def test_hand_grants_at_once_keep_the_frequency_cap(market):
    """Six running campaigns of disjoint windows (so the one-live-coupon rule does not bite), each one's
    coupon given to s2 by hand at the same moment, cap 2 in 28 days: exactly two are given."""
    from commerce.services import shoppers
    from commerce.services.coupons import grant_coupon
    from tests.commerce.test_concurrency import run_concurrently

    n, cap2 = 6, cmp.ContactPolicy(frequency_cap=2, window_days=28)
    with transaction(market) as s:
        for i in range(n):
            shoppers.create_shopper(s, f"t{i}", "Zhejiang")
    for i in range(n):
        _running(market, f"K{i}", audience=((f"t{i}", "t"),), start=NOW + 2 * i * DAY, days=1)

    def grant(i):
        with transaction(market) as s:
            return grant_coupon(s, f"K{i}-5", ["s2"], at=NOW + 2 * i * DAY, contact_policy=cap2)

    ok, refused = run_concurrently(grant, n)
    assert ok == [1, 1] and refused == ["frequency_capped"] * (n - 2)
    with market() as s:
        assert len(s.scalars(select(CouponGrant.id).where(CouponGrant.shopper_id == "s2")).all()) == 2


@pytest.mark.parametrize("completed_at", [NOW + DAY, NOW + 10 * DAY], ids=["before-window", "at-its-start"])
def test_a_campaign_completed_before_its_window_opens_leaves_no_live_coupon_in_it(market, completed_at):
    """A (window from day 10) is launched early and completed before its window opens, or at its very
    start: its coupon kept its window (completion ended only coupons already started), so s0 held a
    live coupon of a completed campaign, which the one-coupon rule no longer counts, beside B's
    (overlapping A, scheduled with s0 once A completed). Completion now leaves its coupons an empty
    window: s0 holds B's coupon only."""
    from commerce.services.checkout import CartLine, checkout

    with transaction(market) as s:
        _draft(s, "A", NOW + 10 * DAY, NOW + 17 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=NOW)
        cmp.complete_campaign(s, "A", at=completed_at)
        _draft(s, "B", NOW + 12 * DAY, NOW + 20 * DAY, [("s0", "t")])
        cmp.schedule_campaign(s, "B", at=completed_at)
        cmp.start_campaign(s, "B", at=completed_at)
    for day in (10, 12, 16):
        with market() as s:
            live = [c.coupon_id for c in eligible_coupons(s, "s0", NOW + day * DAY)]
        assert live == ([] if day < 12 else ["B-5"]), (day, live)
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="A-5", at=NOW + 12 * DAY)
    assert err.value.code == "coupon_expired"


def test_a_campaign_coupon_that_cannot_be_used_again_is_not_granted_by_hand(market):
    """A's budget of 100 has 3 left, less than its 5 CNY coupon takes: a hand grant would contact s2
    (and make them a live coupon holder) for a coupon checkout refuses (`campaign_budget_exhausted`,
    422, as the storefront leaves it out); a coupon of A used up refuses likewise (`coupon_exhausted`).
    With the budget back (a refund), s2 gets it."""
    from commerce.errors import LimitExceeded
    from commerce.services.coupons import CouponInput, create_coupon, grant_coupon

    _running(market)
    with transaction(market) as s:
        create_coupon(
            s,
            CouponInput(
                "amount_off",
                "1",
                coupon_id="A-1",
                campaign_id="A",
                requires_grant=True,
                usage_limit=1,
                starts_at=NOW,
                ends_at=NOW + 7 * DAY,
            ),
        )
        s.execute(update(Coupon).where(Coupon.coupon_id == "A-1").values(used=1))
        s.execute(update(cmp.Campaign).where(cmp.Campaign.campaign_id == "A").values(spent=Decimal("97")))
    for coupon_id, code in (("A-5", "campaign_budget_exhausted"), ("A-1", "coupon_exhausted")):
        with pytest.raises(LimitExceeded) as err, transaction(market) as s:
            grant_coupon(s, coupon_id, ["s2"], at=NOW + DAY)
        assert err.value.code == code
    with market() as s:
        assert s.scalars(select(CouponGrant.shopper_id)).all() == ["s0"]
    with transaction(market) as s:
        s.execute(update(cmp.Campaign).where(cmp.Campaign.campaign_id == "A").values(spent=Decimal("95")))
        assert grant_coupon(s, "A-5", ["s2"], at=NOW + DAY) == 1


def test_a_hand_grant_and_a_schedule_at_once_keep_the_frequency_cap(market):
    """Cap 1 in 28 days, five rounds: the coupon of running R_r to s2 by hand and the schedule of D_r
    (a later window, not overlapping R_r, treating s2) at the same moment: exactly one wins each time
    (`frequency_capped` for the other), since both take campaign scheduling's lock before counting."""
    from commerce.services.coupons import grant_coupon
    from tests.commerce.test_concurrency import run_concurrently

    rounds, one = 5, cmp.ContactPolicy(frequency_cap=1, window_days=28)
    for r in range(rounds):
        _running(market, f"R{r}", audience=(("s0", "t"),), start=NOW + 100 * r * DAY, days=1)
        with transaction(market) as s:
            _draft(s, f"D{r}", NOW + (100 * r + 2) * DAY, NOW + (100 * r + 3) * DAY, [("s2", "t")])
    for r in range(rounds):

        def race(i, r=r):
            with transaction(market) as s:
                if i == 0:
                    return grant_coupon(s, f"R{r}-5", ["s2"], at=NOW + 100 * r * DAY, contact_policy=one)
                return cmp.schedule_campaign(s, f"D{r}", at=NOW, contact_policy=one).status

        ok, refused = run_concurrently(race, 2)
        assert len(ok) == 1 and refused == ["frequency_capped"], (r, ok, refused)


def test_windows_in_other_time_zones_are_compared_as_instants(market):
    """A ends 2026-06-08 00:00 UTC; B starts 2026-06-08 02:00 Beijing time (+08:00), which is 18:00 UTC
    the day before: they overlap, though their wall-clock strings do not. B may not treat s0 (A's),
    nor may A's coupon go to B's s1 by hand; C, starting at 08:00 Beijing time (A's end), may."""
    from datetime import datetime, timezone

    from commerce.errors import Conflict
    from commerce.services.coupons import grant_coupon

    beijing = timezone(timedelta(hours=8))
    a_end = datetime(2026, 6, 8, tzinfo=UTC)
    with transaction(market) as s:
        _draft(s, "A", a_end - 7 * DAY, a_end, [("s0", "t")])
        cmp.schedule_campaign(s, "A", at=NOW)
        cmp.start_campaign(s, "A", at=a_end - 7 * DAY)
        b_start = datetime(2026, 6, 8, 2, tzinfo=beijing)
        _draft(s, "B", b_start, b_start + DAY, [("s0", "t")])
        _draft(s, "B2", b_start, b_start + DAY, [("s1", "t")])
        cmp.schedule_campaign(s, "B2", at=NOW)
        c_start = datetime(2026, 6, 8, 8, tzinfo=beijing)
        _draft(s, "C", c_start, c_start + DAY, [("s0", "t")])
    with pytest.raises(Conflict) as err, transaction(market) as s:
        cmp.schedule_campaign(s, "B", at=NOW)
    assert err.value.code == "live_coupon_held"
    with pytest.raises(Conflict) as err, transaction(market) as s:
        grant_coupon(s, "A-5", ["s1"], at=a_end - DAY)
    assert err.value.code == "live_coupon_held"
    with transaction(market) as s:
        assert cmp.schedule_campaign(s, "C", at=NOW).status == "scheduled"


def test_a_coupon_whose_window_has_ended_is_not_granted_by_hand(market):
    """A's coupon ended early while A still runs, and a coupon of no campaign ended: a hand grant of
    either at or after its end is refused (`coupon_expired`, checkout's code; before, it was stored,
    and A's counted as a contact that gave nothing); just before its end it is given."""
    from commerce.services.coupons import CouponInput, create_coupon, end_coupon, grant_coupon

    _running(market, audience=(("s0", "t"),))
    with transaction(market) as s:
        end_coupon(s, "A-5", at=NOW + 2 * DAY)
        create_coupon(s, CouponInput("amount_off", "5", requires_grant=True, coupon_id="open", ends_at=NOW))
    for coupon_id, ended in (("A-5", NOW + 2 * DAY), ("open", NOW)):
        for at in (ended, ended + DAY):
            with pytest.raises(ValidationError) as err, transaction(market) as s:
                grant_coupon(s, coupon_id, ["s2"], at=at)
            assert err.value.code == "coupon_expired" and coupon_id in str(err.value)
        with market() as s:
            holders = select(CouponGrant.shopper_id).where(CouponGrant.coupon_id == coupon_id)
            assert s.scalars(holders).all() == (["s0"] if coupon_id == "A-5" else [])
    with transaction(market) as s:
        assert grant_coupon(s, "A-5", ["s2"], at=NOW + 2 * DAY - timedelta(seconds=1)) == 1
        assert grant_coupon(s, "open", ["s2"], at=NOW - timedelta(seconds=1)) == 1


def test_a_coupon_left_the_empty_window_is_refused_for_being_in_use_not_for_its_window(market):
    """Completing a campaign before its window opens leaves its coupon [at, at); an edit of that coupon
    (granted at launch) was refused with `invalid_window`, for a window nobody asked to change (the
    console's coupon form said "ends_at must be after starts_at"), instead of `coupon_in_use`."""
    from commerce.errors import InvalidState
    from commerce.services.coupons import update_coupon

    _completed_before_its_window(market)
    with pytest.raises(InvalidState) as err, transaction(market) as s:
        update_coupon(s, "A-5", min_spend=10)
    assert err.value.code == "coupon_in_use"


def test_an_open_coupon_costs_checkout_no_grant_query(market):
    """`check_usable` asked the database on every checkout with a coupon, an open one too (the grant
    rule moved into SQL): an extra query per request. An open coupon of no campaign needs none; a
    grant-only one is still checked."""
    from sqlalchemy import event

    from commerce.services.coupons import CouponInput, check_usable, create_coupon

    with transaction(market) as s:
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="open"))
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="vip", requires_grant=True))
    statements: list[str] = []
    with market() as s:
        open_coupon, vip = s.get(Coupon, "open"), s.get(Coupon, "vip")
        event.listen(s.get_bind(), "before_cursor_execute", lambda *a: statements.append(a[2]))
        check_usable(s, open_coupon, "s1", NOW)
        assert statements == []
        with pytest.raises(ValidationError) as err:
            check_usable(s, vip, "s1", NOW)
        assert err.value.code == "coupon_not_granted" and len(statements) == 1
