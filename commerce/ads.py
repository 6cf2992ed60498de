"""Keyword promotion (sponsored search results): campaigns, keywords with bids, daily budgets,
impressions and charged clicks (ORM).

A day's spend (`ad_budget_days.spent`) is only raised by the conditional UPDATE in
`commerce.services.ads.charge_click` (`spent + price <= budget`), so concurrent clicks never overspend;
a click's single use is the primary key of `ad_clicks` (the impression token's nonce).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import Money, UTCDateTime, skeleton_of, str_enum, utcnow

MATCH_TYPES = ("exact", "phrase", "broad")
AD_CAMPAIGN_STATUSES = ("active", "paused", "ended")
KEYWORD_STATUSES = ("active", "paused")


class KeywordCampaign(Base):
    __tablename__ = "keyword_campaigns"
    __table_args__ = (CheckConstraint("daily_budget > 0", name="budget_positive"),)

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id_skeleton: Mapped[str] = skeleton_of("campaign_id")
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    daily_budget: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(
        str_enum("ad_campaign_status", AD_CAMPAIGN_STATUSES), default="active"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeywordCampaignProduct(Base):
    """A product the campaign promotes (the merchant's own, approved for sale when added).

    `campaign_open` is whether the campaign is not ended (`commerce.services.ads.update_campaign` clears
    it as it ends one): the index holds a product to one open campaign
    (`ads.MAX_OPEN_CAMPAIGNS_PER_PRODUCT`) where the check at creation cannot, rows written before that
    check (migration 0045) or by a writer that skips it. It is a copy rather than a foreign key to the
    campaign's (id, status): that would make the status a key, and ending or pausing a campaign would
    wait for every click and impression being written for it (their key-share locks)."""

    __tablename__ = "keyword_campaign_products"
    __table_args__ = (
        Index(
            "uq_keyword_campaign_products_open_product",
            "product_id",
            unique=True,
            sqlite_where=text("campaign_open"),
            postgresql_where=text("campaign_open"),
        ),
    )

    campaign_id: Mapped[str] = mapped_column(ForeignKey("keyword_campaigns.campaign_id"), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"), primary_key=True)
    campaign_open: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class AdKeyword(Base):
    """A keyword (stored in analysed form: tokens joined by spaces) with its match type and bid per click."""

    __tablename__ = "ad_keywords"
    __table_args__ = (
        UniqueConstraint("campaign_id", "keyword", "match_type"),
        CheckConstraint("bid > 0", name="bid_positive"),
    )

    keyword_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("keyword_campaigns.campaign_id"), index=True)
    keyword: Mapped[str] = mapped_column(String(200))
    match_type: Mapped[str] = mapped_column(str_enum("ad_match_type", MATCH_TYPES))
    bid: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(str_enum("ad_keyword_status", KEYWORD_STATUSES), default="active")


class AdBudgetDay(Base):
    """One campaign's spend on one UTC day; `budget` is the daily budget when the day's first click came."""

    __tablename__ = "ad_budget_days"
    __table_args__ = (
        CheckConstraint("spent >= 0 AND spent <= budget", name="spent_within_budget"),
        CheckConstraint("clicks >= 0", name="clicks_nonnegative"),
    )

    campaign_id: Mapped[str] = mapped_column(ForeignKey("keyword_campaigns.campaign_id"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    budget: Mapped[Decimal] = mapped_column(Money)
    spent: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    clicks: Mapped[int] = mapped_column(Integer, default=0)


class AdImpression(Base):
    """A sponsored result shown (written in batches by the API replica that showed it)."""

    __tablename__ = "ad_impressions"
    __table_args__ = (
        Index("ix_ad_impressions_campaign_shown", "campaign_id", "shown_at"),
        # Every column `viewer_days` reads, in ad and viewer order: the refresh's count groups an index
        # read in order instead of sorting every row (migration 0043, bench/ads_refresh.py).
        Index(
            "ix_ad_impressions_viewer_days",
            "campaign_id",
            "product_id",
            "shopper_id",
            "client",
            "shown_at",
            "token_id",
        ),
        # The same, time first: a refresh after a replica's first counts only the days that may still
        # change, a range of `shown_at` (`RollingViewerDays`, migration 0044).
        Index(
            "ix_ad_impressions_recent_days",
            "shown_at",
            "campaign_id",
            "product_id",
            "shopper_id",
            "client",
            "token_id",
        ),
    )

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("keyword_campaigns.campaign_id"))
    keyword_id: Mapped[int] = mapped_column(ForeignKey("ad_keywords.keyword_id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"))
    shopper_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: An anonymous search's client (`commerce.services.ads.client_tag`), as on `ad_clicks`: the ad's
    #: click rate counts its impressions once per viewer and day (`commerce.services.ads.viewer_days`).
    client: Mapped[str | None] = mapped_column(String(32), default=None)
    slot: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)  # cost per click the auction set
    shown_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdClick(Base):
    """A click on a sponsored result; one per impression token. `charged` is false when the day's budget
    could not cover the price (the click is still counted, never billed)."""

    __tablename__ = "ad_clicks"
    __table_args__ = (Index("ix_ad_clicks_campaign_clicked", "campaign_id", "clicked_at"),)

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("keyword_campaigns.campaign_id"))
    keyword_id: Mapped[int] = mapped_column(ForeignKey("ad_keywords.keyword_id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"))
    shopper_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    #: An anonymous search's client (`commerce.services.ads.client_tag`), whose repeat clicks on an ad in
    #: a day are not billed, as a shopper's are not.
    client: Mapped[str | None] = mapped_column(String(32), default=None)
    slot: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)  # what was billed (0 when not charged)
    charged: Mapped[bool] = mapped_column(Boolean)
    clicked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
