"""Campaign use cases: create, set the audience, schedule, start (grant), complete, export, outcomes.

Starting a campaign grants the coupons through `commerce.services.coupons.grant_audience`, so every
grant is a `CouponGrant` with this campaign and its delivery channel. After completion,
`campaign_outcomes` returns each member's purchases in the campaign window for the measurement
(`marketing.measurement`); this module holds no statistics.

Status changes are conditional UPDATEs (`WHERE status = <expected>`), so two concurrent requests can
never both start or complete the same campaign. A shopper holds at most one live campaign coupon:
scheduling refuses a campaign whose treated audience shares a shopper with another scheduled or
running campaign of overlapping window, or one granted such a campaign's coupon by hand
(`live_coupon_holders`, the rule the planner excludes by and hand grants check).
Nor is a shopper contacted more than `ContactPolicy.frequency_cap` times within any `window_days`:
scheduling refuses a campaign that would pass it (`frequency_capped`, the planner's rule too).
Schedules and hand grants of campaign coupons are serialized (SQLite's write lock; on PostgreSQL an
advisory lock, then the campaign's or coupon's row: always that order), so two at once cannot together
pass the one-coupon check nor the frequency cap; a coupon of no campaign is granted without it.

A treated arm's coupon must be one of the campaign's and need a grant (else the holdout, and shoppers
of other campaigns, could use it); launching checks that again under the coupons' row locks, since a
coupon can be edited until it is granted, and ends each of the campaign's coupons within the campaign's
window, so a campaign's coupon is live only inside the window the one-coupon rule compares. Row locks
are taken coupons first (in coupon id order), then the campaign, the order redemption takes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO

from sqlalchemy import (
    case,
    delete,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from commerce.campaigns import CHANNELS, CONTROL, Campaign, CampaignMember
from commerce.coupons import Coupon, CouponGrant, CouponRedemption
from commerce.errors import Conflict, InvalidState, NotFound, ValidationError
from commerce.orders import COUNTED_STATUSES, Order
from commerce.services._util import (
    chosen_id,
    locked_or_404,
    lookup_name,
    new_id,
    required_text,
    stored_key,
    write_csv,
)
from commerce.services.coupons import (
    ContactPolicy,
    grant_audience,
    live_holders,
    lock_live_coupons,
    nearby_contacts,
)
from commerce.shoppers import Shopper
from commerce.sqltypes import as_utc, to_money, to_rate, utcnow

AUDIENCE_BATCH = 10_000  # members read per batch by `audience`


@dataclass(frozen=True)
class CampaignInput:
    name: str
    channel: str
    budget: Decimal | str
    starts_at: datetime
    ends_at: datetime
    control_share: Decimal | str = "0.1"
    campaign_id: str | None = None


def create_campaign(session: Session, data: CampaignInput) -> Campaign:
    """Store a new campaign as a draft."""
    if data.channel not in CHANNELS:
        raise ValidationError(
            f"channel must be one of {CHANNELS}, got {data.channel!r}", code="invalid_channel"
        )
    name = required_text(data.name, "name", 200)
    budget = to_money(data.budget, field="budget")
    if budget <= 0:
        raise ValidationError("budget must be positive", code="invalid_campaign")
    share = to_rate(data.control_share, field="control_share", code="invalid_campaign")
    if not 0 <= share < 1:
        raise ValidationError("control_share must be in [0, 1)", code="invalid_campaign")
    if as_utc(data.ends_at) <= as_utc(data.starts_at):
        raise ValidationError("ends_at must be after starts_at", code="invalid_window")
    campaign_id = chosen_id(  # named: only marketers and admins create campaigns, and they see all
        session, data.campaign_id or new_id("cmp"), Campaign.campaign_id, "campaign_id", true()
    )
    if session.get(Campaign, campaign_id) is not None:
        raise Conflict(f"campaign {campaign_id!r} already exists", code="duplicate_campaign")
    campaign = Campaign(
        campaign_id=campaign_id,
        name=name,
        channel=data.channel,
        budget=budget,
        control_share=share,
        starts_at=as_utc(data.starts_at),
        ends_at=as_utc(data.ends_at),
    )
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(session: Session, campaign_id: str) -> Campaign:
    """The campaign a client names by its id, as stored or in any look-alike form (`stored_key`)."""
    campaign = session.get(Campaign, stored_key(session, Campaign, campaign_id))
    if campaign is None:
        raise NotFound(f"unknown campaign {campaign_id!r}", code="campaign_not_found")
    return campaign


def set_audience(
    session: Session,
    campaign_id: str,
    members: Iterable[tuple[str, str]],
    *,
    arm_probabilities: Mapping[str, Mapping[str, float]] | None = None,
) -> int:
    """Replace a draft campaign's audience with (shopper_id, arm) pairs; returns the audience size.

    `arm` is a coupon of this campaign (Coupon.campaign_id) or "control" for the holdout.
    `arm_probabilities` (shopper_id -> {arm: probability}, summing to 1, the shopper's own arm
    included) logs how each arm was drawn, when it was drawn at random; shoppers absent log none.
    The campaign row stays locked to the end of the transaction, so audiences stored at once replace
    each other instead of adding up, and none lands after scheduling checked the audience.
    """
    campaign = locked_or_404(session, Campaign, campaign_id, "campaign")
    if campaign.status != "draft":
        raise InvalidState(
            f"campaign {campaign_id!r} is {campaign.status}; only a draft's audience may change"
        )
    pairs = [(s, lookup_name(a)) for s, a in members]  # an arm names a coupon (`lookup_name`)
    shoppers = [s for s, _ in pairs]
    if len(set(shoppers)) != len(shoppers):
        raise ValidationError(
            "a shopper appears more than once (at most one coupon each)", code="duplicate_member"
        )
    coupons = set(session.scalars(select(Coupon.coupon_id).where(Coupon.campaign_id == campaign_id)))
    bad_arms = sorted({a for _, a in pairs if a != CONTROL and a not in coupons})
    if bad_arms:
        raise ValidationError(
            f"arms {bad_arms[:5]} are neither 'control' nor coupons of campaign {campaign_id!r}",
            code="invalid_arm",
        )
    known: set[str] = set()
    for start in range(0, len(shoppers), 5000):
        chunk = shoppers[start : start + 5000]
        known.update(session.scalars(select(Shopper.shopper_id).where(Shopper.shopper_id.in_(chunk))))
    if missing := [s for s in shoppers if s not in known]:
        raise NotFound(f"unknown shoppers {missing[:5]}", code="shopper_not_found")
    probabilities = dict(arm_probabilities or {})
    for shopper, arm in pairs:
        if shopper in probabilities:
            probabilities[shopper] = _arm_probabilities(shopper, arm, probabilities[shopper], coupons)
    session.execute(delete(CampaignMember).where(CampaignMember.campaign_id == campaign_id))
    session.add_all(
        CampaignMember(
            campaign_id=campaign_id,
            shopper_id=s,
            arm=a,
            coupon_id=None if a == CONTROL else a,
            arm_probabilities=probabilities.get(s),
        )
        for s, a in pairs
    )
    session.flush()
    return len(pairs)


def _arm_probabilities(shopper: str, arm: str, probs: Mapping[str, float], coupons: set[str]) -> dict:
    """A shopper's logged arm probabilities, checked: known arms, each in [0, 1], summing to 1, and
    the arm the shopper got possible (else the log contradicts itself)."""
    out: dict[str, float] = {}
    for a, p in probs.items():  # `N30` and `Ｎ３０` are one arm: the later one overwrote the other
        if (arm_of := lookup_name(str(a))) in out:
            raise ValidationError(
                f"arm probabilities of {shopper!r} name arm {arm_of!r} twice", code="invalid_arm"
            )
        out[arm_of] = float(p)
    if unknown := sorted(a for a in out if a != CONTROL and a not in coupons):
        raise ValidationError(
            f"arm probabilities of {shopper!r} name unknown arms {unknown[:5]}", code="invalid_arm"
        )
    if not all(0 <= p <= 1 for p in out.values()) or abs(sum(out.values()) - 1) > 1e-6:
        raise ValidationError(
            f"arm probabilities of {shopper!r} must be in [0, 1] and sum to 1", code="invalid_probabilities"
        )
    if out.get(arm, 0) <= 0:
        raise ValidationError(
            f"{shopper!r} got arm {arm!r}, which its probabilities rule out", code="invalid_probabilities"
        )
    return out


def _transition(session: Session, campaign_id: str, source: str, target: str, **values) -> Campaign:
    result = session.execute(
        update(Campaign)
        .where(Campaign.campaign_id == campaign_id, Campaign.status == source)
        .values(status=target, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        campaign = get_campaign(session, campaign_id)
        raise InvalidState(
            f"campaign {campaign_id!r} is {campaign.status}, not {source}; cannot move to {target}"
        )
    campaign = get_campaign(session, campaign_id)
    session.refresh(campaign)
    return campaign


def _arm_counts(session: Session, campaign_id: str) -> dict[str, int]:
    rows = session.execute(
        select(CampaignMember.arm, func.count())
        .where(CampaignMember.campaign_id == campaign_id)
        .group_by(CampaignMember.arm)
    )
    return {arm: n for arm, n in rows}


def live_coupon_holders(session: Session, campaign: Campaign) -> set[str]:
    """Shoppers who hold, or are about to hold, a live coupon of another campaign overlapping
    `campaign` (its audience, or granted by hand): it may not give them one too (the holdout holds
    none). The query is `commerce.services.coupons.live_holders`, which hand grants check too."""
    holders = live_holders(campaign)
    return set(session.scalars(select(holders.c.shopper_id).distinct()))


def frequency_capped(
    session: Session, campaign: Campaign, policy: ContactPolicy, *, treated_only: bool = False
) -> set[str]:
    """Shoppers with `frequency_cap` or more other contacts within `window_days` of `campaign`'s
    start, whom it may not contact (`treated_only`: only those in its treated audience).

    Refusing a contact with `frequency_cap` others that near keeps every `window_days` of every
    shopper at `frequency_cap` contacts or fewer whatever the order campaigns are scheduled in: of
    the contacts in one such window, the last one scheduled saw all the others. It can refuse a
    contact that would fit (others before and after, no window holding all): the price of a rule
    that does not depend on the order."""
    contacts = nearby_contacts(campaign.campaign_id, campaign.starts_at, policy)
    stmt = select(contacts.c.shopper_id)
    if treated_only:
        stmt = stmt.where(
            contacts.c.shopper_id.in_(
                select(CampaignMember.shopper_id).where(
                    CampaignMember.campaign_id == campaign.campaign_id, CampaignMember.arm != CONTROL
                )
            )
        )
    stmt = stmt.group_by(contacts.c.shopper_id).having(func.count() >= policy.frequency_cap)
    return set(session.scalars(stmt))


def check_measurable(campaign: Campaign, arm_counts: Mapping[str, int]) -> None:
    """Raise unless an audience of these arm counts can run: treated shoppers and, when the campaign
    asks for one, a holdout (else the result could not be measured). Planning checks its plan by it too."""
    if sum(n for arm, n in arm_counts.items() if arm != CONTROL) == 0:
        raise ValidationError("the audience has no treated shoppers; set it first", code="empty_audience")
    if campaign.control_share > 0 and arm_counts.get(CONTROL, 0) == 0:
        raise ValidationError(
            f"control_share is {campaign.control_share} but the audience of "
            f"{sum(arm_counts.values())} has no holdout; the result could not be measured",
            code="missing_holdout",
        )


def _arm_coupon_ids(session: Session, campaign_id: str) -> set[str]:
    return set(
        session.scalars(
            select(CampaignMember.coupon_id)
            .where(CampaignMember.campaign_id == campaign_id, CampaignMember.coupon_id.is_not(None))
            .distinct()
        )
    )


def _check_arm_coupons(session: Session, campaign_id: str, arms: set[str], *, lock: bool) -> None:
    """Raise unless every treated arm's coupon is still this campaign's and needs a grant. With `lock`
    the campaign's coupons and the arms' are locked (coupon id order) and re-read first, so no edit
    lands between this check and the grants."""
    stmt = (
        select(Coupon)
        .where(or_(Coupon.campaign_id == campaign_id, Coupon.coupon_id.in_(sorted(arms))))
        .order_by(Coupon.coupon_id)
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    coupons = {c.coupon_id: c for c in session.scalars(stmt)}
    bad = sorted(a for a in arms if coupons[a].campaign_id != campaign_id or not coupons[a].requires_grant)
    if bad:
        raise ValidationError(
            f"coupons {bad[:5]} of the treated audience are not grant-only coupons of campaign "
            f"{campaign_id!r} (edited since planning, or usable by anyone: the holdout and other "
            "campaigns' shoppers too); fix the coupons and plan again",
            code="invalid_arm",
        )


def schedule_campaign(
    session: Session,
    campaign_id: str,
    at: datetime | None = None,
    *,
    contact_policy: ContactPolicy | None = ContactPolicy(),  # noqa: B008 (frozen, immutable)
) -> Campaign:
    """draft -> scheduled, once the audience has treated shoppers and, if asked for, a holdout, none
    of its treated shoppers holds a live coupon of an overlapping campaign, and none would pass the
    `contact_policy`'s frequency cap (None: no cap, for history recorded as it happened)."""
    lock_live_coupons(session)  # no other schedule, nor a hand grant, between the checks and the move
    # no audience replaced between the checks and the move
    campaign = locked_or_404(session, Campaign, campaign_id, "campaign")
    check_measurable(campaign, _arm_counts(session, campaign_id))
    _check_arm_coupons(session, campaign_id, _arm_coupon_ids(session, campaign_id), lock=False)
    clash = select(CampaignMember.shopper_id).where(
        CampaignMember.campaign_id == campaign_id,
        CampaignMember.arm != CONTROL,
        CampaignMember.shopper_id.in_(select(live_holders(campaign).c.shopper_id)),
    )
    if held := list(session.scalars(clash.order_by(CampaignMember.shopper_id).limit(6))):
        raise Conflict(
            f"shoppers {held[:5]} of the treated audience hold a live coupon of an overlapping campaign "
            "(at most one each); plan the audience again",
            code="live_coupon_held",
        )
    if contact_policy is not None and (
        capped := sorted(frequency_capped(session, campaign, contact_policy, treated_only=True))
    ):
        raise Conflict(
            f"shoppers {capped[:5]} of the treated audience already have {contact_policy.frequency_cap} "
            f"campaign coupons within {contact_policy.window_days} days of this campaign's start; "
            "plan the audience again",
            code="frequency_capped",
        )
    return _transition(session, campaign_id, "draft", "scheduled", scheduled_at=as_utc(at or utcnow()))


def start_campaign(session: Session, campaign_id: str, at: datetime | None = None) -> Campaign:
    """scheduled -> running: grant every treated member their coupon over the campaign's channel.
    The campaign's coupons are ended within its window first (none starts before it nor ends after
    it), so however early or late it is launched, its coupons are live only inside that window."""
    at = as_utc(at or utcnow())
    arms = _arm_coupon_ids(session, campaign_id)  # a scheduled audience no longer changes
    _check_arm_coupons(session, campaign_id, arms, lock=True)  # coupons' rows, then the campaign's
    campaign = _transition(session, campaign_id, "scheduled", "running", started_at=at)
    mine = Coupon.campaign_id == campaign_id
    session.execute(
        update(Coupon)
        .where(mine, or_(Coupon.starts_at.is_(None), Coupon.starts_at < campaign.starts_at))
        .values(starts_at=campaign.starts_at)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(Coupon)
        .where(mine, or_(Coupon.ends_at.is_(None), Coupon.ends_at > campaign.ends_at))
        .values(ends_at=campaign.ends_at)
        .execution_options(synchronize_session="fetch")
    )
    by_coupon: dict[str, list[str]] = {}
    for shopper_id, coupon_id in session.execute(
        select(CampaignMember.shopper_id, CampaignMember.coupon_id).where(
            CampaignMember.campaign_id == campaign_id, CampaignMember.coupon_id.is_not(None)
        )
    ):
        by_coupon.setdefault(coupon_id, []).append(shopper_id)
    for coupon_id, shoppers in sorted(by_coupon.items()):
        grant_audience(session, coupon_id, shoppers, campaign_id=campaign_id, channel=campaign.channel, at=at)
        grants = dict(
            session.execute(
                select(CouponGrant.shopper_id, CouponGrant.id).where(
                    CouponGrant.coupon_id == coupon_id, CouponGrant.shopper_id.in_(shoppers)
                )
            ).all()
        )
        for member in session.scalars(
            select(CampaignMember).where(
                CampaignMember.campaign_id == campaign_id, CampaignMember.coupon_id == coupon_id
            )
        ):
            member.grant_id = grants[member.shopper_id]
    session.flush()
    return campaign


def complete_campaign(session: Session, campaign_id: str, at: datetime | None = None) -> Campaign:
    """running -> completed; the measurement window is [started_at, completed_at]. The campaign's
    coupons end then (uses already redeemed stay): a completed campaign holds no live coupon, which is
    what lets the next campaign give its shoppers one. A coupon not started by then (a campaign
    launched early and completed before, or as, its window opens) is left the empty window [at, at):
    ending only the started ones left it live in its window, beside the next campaign's coupon."""
    at = as_utc(at or utcnow())
    session.scalars(  # coupons' rows before the campaign's, as redemption takes them
        select(Coupon.coupon_id)
        .where(Coupon.campaign_id == campaign_id)
        .order_by(Coupon.coupon_id)
        .with_for_update()
    ).all()
    campaign = _transition(session, campaign_id, "running", "completed", completed_at=at)
    session.execute(
        update(Coupon)
        .where(Coupon.campaign_id == campaign_id, or_(Coupon.ends_at.is_(None), Coupon.ends_at > at))
        .values(ends_at=at, starts_at=case((Coupon.starts_at > at, at), else_=Coupon.starts_at))
        .execution_options(synchronize_session="fetch")  # loaded coupons see their new end
    )
    return campaign


def audience(session: Session, campaign_id: str) -> Iterator[dict]:
    """The audience as rows: shopper_id, arm, coupon_id, channel, grant_id (None until started), read
    in batches as they are consumed (read at once as ORM objects, 200,000 members took 294 MB)."""
    channel = get_campaign(session, campaign_id).channel  # NotFound now, not at the first row
    members = session.execute(
        select(
            CampaignMember.shopper_id, CampaignMember.arm, CampaignMember.coupon_id, CampaignMember.grant_id
        )
        .where(CampaignMember.campaign_id == campaign_id)
        .order_by(CampaignMember.shopper_id)
        .execution_options(yield_per=AUDIENCE_BATCH)
    )
    return (
        {
            "shopper_id": shopper_id,
            "arm": arm,
            "coupon_id": coupon_id or "",
            "channel": channel if coupon_id else "",
            "grant_id": "" if grant_id is None else grant_id,
        }
        for shopper_id, arm, coupon_id, grant_id in members
    )


def export_audience_csv(session: Session, campaign_id: str, out: IO[str]) -> int:
    """Write the audience as CSV (header + one row per member) to `out`, cells neutralised against
    formulas (`write_csv`); returns the rows written."""
    return write_csv(
        out, ["shopper_id", "arm", "coupon_id", "channel", "grant_id"], audience(session, campaign_id)
    )


def campaign_outcomes(session: Session, campaign_id: str) -> list[dict]:
    """Per member: converted (a counted order in the window), revenue (gross goods value of those
    orders) and discount (this campaign's coupon redemptions, not released), as Decimal CNY."""
    campaign = get_campaign(session, campaign_id)
    if campaign.status != "completed":
        raise InvalidState(f"campaign {campaign_id!r} is {campaign.status}; measure it once completed")
    start, end = campaign.started_at, campaign.completed_at
    members = {
        m.shopper_id: m.arm
        for m in session.scalars(select(CampaignMember).where(CampaignMember.campaign_id == campaign_id))
    }
    member_ids = select(CampaignMember.shopper_id).where(CampaignMember.campaign_id == campaign_id)
    revenue = dict(
        session.execute(
            select(Order.shopper_id, func.sum(Order.goods_total))
            .where(
                Order.shopper_id.in_(member_ids),
                Order.status.in_(COUNTED_STATUSES),
                Order.created_at >= start,
                Order.created_at <= end,
            )
            .group_by(Order.shopper_id)
        ).all()
    )
    coupon_ids = select(Coupon.coupon_id).where(Coupon.campaign_id == campaign_id)
    discount = dict(
        session.execute(
            select(CouponRedemption.shopper_id, func.sum(CouponRedemption.amount))
            .where(
                CouponRedemption.shopper_id.in_(member_ids),
                CouponRedemption.coupon_id.in_(coupon_ids),
                CouponRedemption.released_at.is_(None),
                CouponRedemption.redeemed_at >= start,
                CouponRedemption.redeemed_at <= end,
            )
            .group_by(CouponRedemption.shopper_id)
        ).all()
    )
    return [
        {
            "shopper_id": s,
            "arm": arm,
            "converted": s in revenue,
            "revenue": Decimal(revenue.get(s) or 0),
            "discount": Decimal(discount.get(s) or 0),
        }
        for s, arm in sorted(members.items())
    ]
