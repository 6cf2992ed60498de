"""Platform revenue: commission (marketplace), margin (self-operated), paid promotion slots and keyword
promotion (charged clicks on sponsored search results)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.catalog import Product
from commerce.errors import ValidationError
from commerce.merchants import Merchant
from commerce.orders import COUNTED_STATUSES, Order, OrderLine
from commerce.promotions import SponsoredPlacement
from commerce.services._util import get_or_404, required_text
from commerce.services.ads import ad_revenue_by_day
from commerce.sqltypes import as_utc, to_money

SOURCES = ("commission", "self_operated_margin", "promotion", "search_ads")
PERIODS = ("day", "month", "year")


def buy_placement(
    session: Session,
    merchant_id: str,
    product_id: str,
    slot: str,
    starts_at: datetime,
    ends_at: datetime,
    spend: Decimal | str,
) -> SponsoredPlacement:
    """Record a sponsored slot an approved merchant bought for one of its own products."""
    merchant = get_or_404(session, Merchant, merchant_id, "merchant")
    if merchant.status != "approved":
        raise ValidationError(f"merchant {merchant_id!r} is not approved", code="merchant_not_approved")
    product = get_or_404(session, Product, product_id, "product")
    if product.merchant_id != merchant_id:
        raise ValidationError("merchants can promote only their own products", code="not_own_product")
    amount = to_money(spend, field="spend")
    if amount < 0:
        raise ValidationError("spend must be >= 0", code="invalid_money")
    if as_utc(ends_at) <= as_utc(starts_at):
        raise ValidationError("ends_at must be after starts_at", code="invalid_window")
    placement = SponsoredPlacement(
        merchant_id=merchant_id,
        product_id=product_id,
        slot=required_text(slot, "slot", 64),
        starts_at=starts_at,
        ends_at=ends_at,
        spend=amount,
    )
    session.add(placement)
    session.flush()
    return placement


@dataclass(frozen=True)
class RevenueRow:
    period: str
    source: str
    amount: Decimal


def _period_key(at: datetime, period: str) -> str:
    fmt = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[period]
    return as_utc(at).strftime(fmt)


def revenue_report(
    session: Session, start: datetime, end: datetime, *, period: str = "month"
) -> list[RevenueRow]:
    """Revenue by period (UTC) and source over [start, end).

    Orders count by payment time while in a paid-or-later status (cancelled and refunded orders earn
    nothing); promotion slots count by their start; search ads by the charged click.
    """
    if period not in PERIODS:
        raise ValidationError(f"period must be one of {PERIODS}", code="invalid_period")
    start, end = as_utc(start), as_utc(end)
    totals: dict[tuple[str, str], Decimal] = defaultdict(lambda: Decimal("0.00"))
    lines = session.execute(
        select(Order.paid_at, OrderLine.commission, OrderLine.margin)
        .join(OrderLine, OrderLine.order_id == Order.order_id)
        .where(Order.status.in_(COUNTED_STATUSES), Order.paid_at >= start, Order.paid_at < end)
    )
    for paid_at, commission, margin in lines:
        key = _period_key(paid_at, period)
        totals[key, "commission"] += commission
        totals[key, "self_operated_margin"] += margin
    for starts_at, spend in session.execute(
        select(SponsoredPlacement.starts_at, SponsoredPlacement.spend).where(
            SponsoredPlacement.starts_at >= start, SponsoredPlacement.starts_at < end
        )
    ):
        totals[_period_key(starts_at, period), "promotion"] += spend
    for clicked_at, price in ad_revenue_by_day(session, start, end):
        totals[_period_key(clicked_at, period), "search_ads"] += price
    return [
        RevenueRow(key, source, totals[key, source])
        for key in sorted({k for k, _ in totals})
        for source in SOURCES
    ]
