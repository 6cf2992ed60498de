"""Who a new campaign may contact: at most one live campaign coupon per shopper, and a frequency cap.

A shopper already in the treated audience of another scheduled or running campaign whose window
overlaps this one holds (or is about to hold) a live campaign coupon, so is left out: two coupons
at once cost twice and the second adds little. A shopper granted `frequency_cap` campaign coupons in
the `window_days` before this campaign's start (a scheduled campaign's treated audience counts as
granted at its start: it has not granted yet) is left out too: responses fall with recent grants
(coupon fatigue, simulated in `marketing.closed_loop`), and the planner's effect model would price
the next grant as if it were the first. The holdout (arm `control`) holds no coupon and counts for
neither rule. The first rule is `commerce.services.campaigns`' (scheduling enforces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session

from commerce.campaigns import CONTROL, Campaign, CampaignMember
from commerce.coupons import CouponGrant
from commerce.services.campaigns import live_coupon_holders

__all__ = ["ContactPolicy", "contact_exclusions"]


@dataclass(frozen=True)
class ContactPolicy:
    """`frequency_cap` campaign coupons per shopper within `window_days` before a campaign starts."""

    frequency_cap: int = 3
    window_days: int = 28

    def __post_init__(self):
        if self.frequency_cap < 1 or self.window_days < 1:
            raise ValueError("frequency_cap and window_days must be at least 1")


def contact_exclusions(session: Session, campaign: Campaign, policy: ContactPolicy) -> dict[str, set[str]]:
    """{"live_coupon": shoppers, "frequency_cap": shoppers} that `campaign` must not contact."""
    live = live_coupon_holders(session, campaign)  # scheduling refuses them too
    since = campaign.starts_at - timedelta(days=policy.window_days)
    granted = select(CouponGrant.shopper_id).where(
        CouponGrant.campaign_id.is_not(None),
        CouponGrant.campaign_id != campaign.campaign_id,
        CouponGrant.granted_at >= since,
        CouponGrant.granted_at < campaign.starts_at,
    )
    to_be_granted = (  # a scheduled campaign grants when it starts: count its treated audience now
        select(CampaignMember.shopper_id)
        .join(Campaign, Campaign.campaign_id == CampaignMember.campaign_id)
        .where(
            Campaign.status == "scheduled",
            Campaign.campaign_id != campaign.campaign_id,
            Campaign.starts_at >= since,
            Campaign.starts_at < campaign.starts_at,
            CampaignMember.arm != CONTROL,
        )
    )
    contacts = union_all(granted, to_be_granted).subquery()
    capped = set(
        session.scalars(
            select(contacts.c.shopper_id)
            .group_by(contacts.c.shopper_id)
            .having(func.count() >= policy.frequency_cap)
        )
    )
    return {"live_coupon": live, "frequency_cap": capped}
