"""Build the serving snapshots from the marketplace database: a handful of aggregate queries per refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from commerce.catalog import Category, Product
from commerce.db import read_only
from commerce.events import BehaviorEvent
from commerce.orders import COUNTED_STATUSES, Order, OrderLine
from commerce.promotions import SponsoredPlacement
from commerce.services.catalog import sellable_product_ids
from commerce.shoppers import Shopper
from serving.catalog import POPULARITY_WEIGHTS, WINDOW_DAYS, CatalogSnapshot


def _frame(session: Session, query) -> pd.DataFrame:
    result = session.execute(query)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def load_catalog(session_factory: sessionmaker[Session], now: datetime | None = None) -> CatalogSnapshot:
    """Products with sellability (commerce's definition, in stock and not), categories, windowed activity,
    purchases and live sponsored slots."""
    now = now or datetime.now(UTC)
    with read_only(session_factory) as session:
        sellable = sellable_product_ids(session, in_stock=True)
        public = sellable_product_ids(session)
        products = _frame(
            session,
            select(
                Product.product_id,
                Product.title,
                Product.merchant_id,
                Product.category_id,
                Product.origin_country,
                Product.price,
                Product.fulfillment,
            ).order_by(Product.product_id),
        )
        categories = _frame(session, select(Category.category_id, Category.parent_id, Category.repurchasable))
        activity = [_activity(session, "all", None, now)]
        activity += [_activity(session, w, now - timedelta(days=d), now) for w, d in WINDOW_DAYS.items()]
        purchases = _frame(
            session,
            select(Order.shopper_id, OrderLine.product_id)
            .join(OrderLine, OrderLine.order_id == Order.order_id)
            .where(Order.status.in_(COUNTED_STATUSES))  # cancelled or refunded: not bought
            .distinct(),
        )
        sponsored = session.scalars(
            select(SponsoredPlacement.product_id)
            .where(SponsoredPlacement.starts_at <= now, SponsoredPlacement.ends_at > now)
            .group_by(SponsoredPlacement.product_id)
            .order_by(func.sum(SponsoredPlacement.spend).desc(), SponsoredPlacement.product_id)
        ).all()
    products["sellable"] = products["product_id"].isin(sellable)
    products["public"] = products["product_id"].isin(public)
    return CatalogSnapshot.from_frames(
        products, categories, pd.concat(activity, ignore_index=True), purchases, sponsored, as_of=now
    )


def _activity(session: Session, window: str, since: datetime | None, now: datetime) -> pd.DataFrame:
    """Per product and type in the window: distinct registered shoppers (`count`) and units
    (`quantity`, which counts only for purchases, logged by the server's order code). Counting
    shoppers, not events, means one shopper (or one key replaying one shopper) repeating an event adds
    nothing; counting only registered shoppers means a key cannot invent a crowd (anonymous visitors'
    events still feed their live sessions). Events stamped in the future are ignored: they would
    otherwise count in every window until their date."""
    query = (
        select(
            BehaviorEvent.product_id,
            BehaviorEvent.event_type,
            func.count(BehaviorEvent.shopper_id.distinct()).label("count"),
            func.coalesce(func.sum(BehaviorEvent.quantity), 0).label("quantity"),
        )
        .where(
            BehaviorEvent.product_id.is_not(None),
            BehaviorEvent.event_type.in_(POPULARITY_WEIGHTS),
            BehaviorEvent.ts <= now,
            BehaviorEvent.shopper_id.in_(select(Shopper.shopper_id)),
        )
        .group_by(BehaviorEvent.product_id, BehaviorEvent.event_type)
    )
    if since is not None:
        query = query.where(BehaviorEvent.ts >= since)
    frame = _frame(session, query)
    frame["window"] = window
    return frame
