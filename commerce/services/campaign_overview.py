"""Read models of campaigns for people: the list, a running campaign's progress, who the audience is;
plus the one edit a draft allows before planning (its budget).

Spend is the campaign's own `Campaign.spent`, the counter redemption holds within the budget (the
list, the detail, the progress, the CLI and the console all show it), not the planner's expectation
nor a sum of coupon counters (a coupon may leave its campaign's budget or predate it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, func, select, update
from sqlalchemy.orm import Session

from commerce.campaigns import CAMPAIGN_STATUSES, CHANNELS, CONTROL, Campaign, CampaignMember
from commerce.coupons import Coupon, CouponGrant, CouponRedemption
from commerce.errors import InvalidState, ValidationError
from commerce.services.campaigns import get_campaign
from commerce.services.pagination import Page, paginate
from commerce.shoppers import Shopper
from commerce.sqltypes import to_money


@dataclass(frozen=True)
class Progress:
    audience: int
    holdout: int
    grants: int
    redemptions: int
    spent: Decimal
    budget: Decimal

    @property
    def budget_used(self) -> float:
        return float(self.spent / self.budget) if self.budget else 0.0


def list_campaigns(
    session: Session,
    *,
    status: str | None = None,
    channel: str | None = None,
    active_at: datetime | None = None,
    name: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Campaign]:
    """Newest first (each with its `spent`). Filters: status, channel, the campaigns whose window
    contains `active_at`, and a case-insensitive part of the name."""
    if status is not None and status not in CAMPAIGN_STATUSES:
        raise ValidationError(f"status must be one of {CAMPAIGN_STATUSES}", code="invalid_status")
    if channel is not None and channel not in CHANNELS:
        raise ValidationError(f"channel must be one of {CHANNELS}", code="invalid_channel")
    stmt = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.campaign_id)
    if status is not None:
        stmt = stmt.where(Campaign.status == status)
    if channel is not None:
        stmt = stmt.where(Campaign.channel == channel)
    if active_at is not None:
        stmt = stmt.where(Campaign.starts_at <= active_at, Campaign.ends_at > active_at)
    if name:
        stmt = stmt.where(Campaign.name.icontains(name, autoescape=True))
    return paginate(session, stmt, limit=limit, offset=offset)


def progress(session: Session, campaign_id: str) -> Progress:
    """Audience, grants, redemptions (not released) and spend against budget."""
    campaign = get_campaign(session, campaign_id)
    arms = dict(
        session.execute(
            select(CampaignMember.arm == CONTROL, func.count())
            .where(CampaignMember.campaign_id == campaign_id)
            .group_by(CampaignMember.arm == CONTROL)
        ).all()
    )
    grants = session.scalar(select(func.count()).where(CouponGrant.campaign_id == campaign_id))
    coupons = select(Coupon.coupon_id).where(Coupon.campaign_id == campaign_id)
    redemptions = session.scalar(
        select(func.count()).where(
            CouponRedemption.coupon_id.in_(coupons), CouponRedemption.released_at.is_(None)
        )
    )
    holdout = int(arms.get(True, 0))
    return Progress(
        audience=holdout + int(arms.get(False, 0)),
        holdout=holdout,
        grants=int(grants or 0),
        redemptions=int(redemptions or 0),
        spent=campaign.spent,
        budget=campaign.budget,
    )


def top_segments(session: Session, campaign_id: str, n: int = 5) -> list[dict]:
    """The audience's largest shopper segments: treated and holdout members each."""
    segment = func.coalesce(Shopper.segment, "unknown")
    rows = session.execute(
        select(
            segment,
            func.sum((CampaignMember.arm != CONTROL).cast(Integer)),
            func.sum((CampaignMember.arm == CONTROL).cast(Integer)),
        )
        .join(Shopper, Shopper.shopper_id == CampaignMember.shopper_id)
        .where(CampaignMember.campaign_id == campaign_id)
        .group_by(segment)
    ).all()
    groups = [{"segment": seg, "treated": int(t or 0), "holdout": int(h or 0)} for seg, t, h in rows]
    groups.sort(key=lambda g: (-g["treated"], -g["holdout"], g["segment"]))
    return groups[:n]


def set_draft_budget(session: Session, campaign_id: str, budget: Decimal | str) -> Campaign:
    """Change a draft's budget before (re)planning; one conditional UPDATE, so a campaign that was
    scheduled meanwhile keeps the budget its audience was planned for."""
    amount = to_money(budget, field="budget")
    if amount <= 0:
        raise ValidationError("budget must be positive", code="invalid_campaign")
    changed = session.execute(
        update(Campaign)
        .where(Campaign.campaign_id == campaign_id, Campaign.status == "draft")
        .values(budget=amount)
        .execution_options(synchronize_session=False)
    ).rowcount
    campaign = get_campaign(session, campaign_id)
    if changed != 1:
        raise InvalidState(f"campaign {campaign_id!r} is {campaign.status}; only a draft's budget may change")
    session.refresh(campaign)
    return campaign


def audience_choices(session: Session) -> tuple[list[str], list[str]]:
    """The regions and the segments shoppers have, for a plan's form to offer: a marketer had to guess
    "beauty_enthusiast" and was told only afterwards that nobody is in the region typed."""
    regions = session.scalars(select(Shopper.region).distinct().order_by(Shopper.region))
    segments = session.scalars(
        select(Shopper.segment).where(Shopper.segment.is_not(None)).distinct().order_by(Shopper.segment)
    )
    return list(regions), list(segments)
