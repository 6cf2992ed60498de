"""The price a shopper pays at a moment: list, limited-time sale or season price, whichever is lowest."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.catalog import Product
from commerce.errors import Conflict, ValidationError
from commerce.promotions import DiscountSeason, PriceWindow
from commerce.services._util import get_or_404
from commerce.sqltypes import as_utc, round_fen, to_money, to_rate


def effective_prices(session: Session, products: list[Product], at: datetime) -> dict[str, Decimal]:
    """Price per product id at `at` (windows are half-open: [starts_at, ends_at))."""
    at = as_utc(at)
    ids = [p.product_id for p in products]
    windows: dict[str, Decimal] = {}
    for product_id, price in session.execute(
        select(PriceWindow.product_id, PriceWindow.price).where(
            PriceWindow.product_id.in_(ids), PriceWindow.starts_at <= at, PriceWindow.ends_at > at
        )
    ):
        windows[product_id] = min(price, windows.get(product_id, price))
    season_discount = max(
        session.scalars(
            select(DiscountSeason.discount).where(DiscountSeason.starts_at <= at, DiscountSeason.ends_at > at)
        ),
        default=Decimal(0),
    )
    prices = {}
    for p in products:
        candidates = [p.price, round_fen(p.price * (1 - season_discount))]
        if p.product_id in windows:
            candidates.append(windows[p.product_id])
        prices[p.product_id] = min(candidates)
    return prices


def add_price_window(
    session: Session,
    product_id: str,
    price: Decimal | str,
    starts_at: datetime,
    ends_at: datetime,
    season_id: str | None = None,
) -> PriceWindow:
    """Schedule a limited-time sale price for a product."""
    product = get_or_404(session, Product, product_id, "product")
    amount = to_money(price, field="price")
    if amount <= 0:
        raise ValidationError("sale price must be positive", code="invalid_price")
    if amount >= product.price:
        raise ValidationError("sale price must be below the list price", code="invalid_price")
    if as_utc(ends_at) <= as_utc(starts_at):
        raise ValidationError("ends_at must be after starts_at", code="invalid_window")
    if season_id is not None:
        get_or_404(session, DiscountSeason, season_id, "season")
    window = PriceWindow(
        product_id=product_id, price=amount, starts_at=starts_at, ends_at=ends_at, season_id=season_id
    )
    session.add(window)
    session.flush()
    return window


def create_season(
    session: Session,
    season_id: str,
    name: str,
    starts_at: datetime,
    ends_at: datetime,
    discount: Decimal | str = "0",
) -> DiscountSeason:
    rate = to_rate(discount, field="discount")
    if not Decimal(0) <= rate < Decimal(1):
        raise ValidationError("season discount must be in [0, 1)", code="invalid_rate")
    if as_utc(ends_at) <= as_utc(starts_at):
        raise ValidationError("ends_at must be after starts_at", code="invalid_window")
    if session.get(DiscountSeason, season_id) is not None:
        raise Conflict(f"season {season_id!r} already exists", code="duplicate_season")
    season = DiscountSeason(
        season_id=season_id, name=name, starts_at=starts_at, ends_at=ends_at, discount=rate
    )
    session.add(season)
    session.flush()
    return season
