"""Marketing campaign tables: a campaign (draft -> scheduled -> running -> completed) and its audience.

A campaign's audience is one row per shopper: the coupon they get (`arm` = a coupon id of this
campaign) or the random holdout (`arm` = `control`), at most one coupon per shopper. When the arm
was drawn at random with known probabilities (a random holdout, randomised coupons),
`arm_probabilities` logs them, so later plans can be valued from this campaign's outcomes
(`marketing.plan_value`). The use cases (lifecycle, audience, grants, outcomes) are
`commerce.services.campaigns`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import Money, Rate, UTCDateTime, skeleton_of, str_enum, utcnow

CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "completed")


CHANNELS = ("site", "email", "social", "search_ads")


CONTROL = "control"
#: A campaign in these states holds (or is about to hold) its treated audience's coupons.
LIVE_STATUSES = ("scheduled", "running")


class Campaign(Base):
    """A coupon campaign. The planner spends `budget` in expectation; `spent` counts the discounts
    its coupons' redemptions took, and a redemption that would pass the budget is refused
    (`commerce.services.coupons.redeem`), so the budget is a hard cap. `control_share` is the
    holdout share."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("control_share >= 0 AND control_share < 1", name="control_share_range"),
        CheckConstraint("budget > 0", name="budget_positive"),
        CheckConstraint("spent >= 0 AND spent <= budget", name="spent_within_budget"),
        CheckConstraint("ends_at > starts_at", name="window_order"),
    )

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id_skeleton: Mapped[str] = skeleton_of("campaign_id")
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(str_enum("campaign_channel", CHANNELS))
    status: Mapped[str] = mapped_column(str_enum("campaign_status", CAMPAIGN_STATUSES), default="draft")
    budget: Mapped[Decimal] = mapped_column(Money)
    spent: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    control_share: Mapped[Decimal] = mapped_column(Rate)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"Campaign({self.campaign_id!r}, {self.status}, channel={self.channel})"


class CampaignMember(Base):
    """One shopper in a campaign's audience; `grant_id` is set when the campaign starts (not for holdout)."""

    __tablename__ = "campaign_members"
    __table_args__ = (UniqueConstraint("campaign_id", "shopper_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"), index=True)
    shopper_id: Mapped[str] = mapped_column(ForeignKey("shoppers.shopper_id"), index=True)
    arm: Mapped[str] = mapped_column(String(64))  # a coupon id, or "control"
    coupon_id: Mapped[str | None] = mapped_column(ForeignKey("coupons.coupon_id"), default=None)
    grant_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_grants.id"), default=None)
    # {arm: probability this shopper was given it}, arms left out had none; None = not logged. Deferred:
    # parsing it costs ~50 us a member, and only the policy value reads it
    arm_probabilities: Mapped[dict | None] = mapped_column(JSON, default=None, deferred=True)
