"""Audience selection: the shoppers a campaign may target and their pre-campaign features, read from
the database (or an exported events Parquet), plus the campaign's coupons as the planner's terms."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from commerce.campaigns import Campaign
from commerce.coupons import Coupon
from commerce.events import BehaviorEvent
from commerce.shoppers import Shopper
from features.campaign_features import EVENT_COLUMNS, SHORT_DAYS, encode_features, shopper_history_features

__all__ = ["coupon_terms", "candidate_shoppers", "shopper_events", "audience_features", "current_features"]

ID_CHUNK = 5000  # shopper ids per IN (...) query: far below every driver's bound-parameter limit


def coupon_terms(session: Session, campaign_id: str) -> pd.DataFrame:
    """The campaign's coupons as the planner's terms: coupon_id, kind, face_value, cap, min_spend."""
    coupons = list(
        session.scalars(select(Coupon).where(Coupon.campaign_id == campaign_id).order_by(Coupon.coupon_id))
    )
    if not coupons:
        raise ValueError(
            f"Campaign {campaign_id!r} has no coupon to offer yet: create one for this campaign first."
        )
    return pd.DataFrame(
        {
            "coupon_id": [c.coupon_id for c in coupons],
            "kind": [c.kind for c in coupons],
            "face_value": [c.value for c in coupons],
            "cap": [c.cap for c in coupons],
            "min_spend": [c.min_spend for c in coupons],
        }
    )


def _nobody_matches(region: str | None, segment: str | None) -> str:
    """The refusal as a marketer reads it ("segment=None" was the query, not a reason)."""
    where = [f"{kind} {value!r}" for kind, value in (("region", region), ("segment", segment)) if value]
    if not where:
        return "There are no shoppers to plan for yet."
    return f"There are no shoppers in {' and '.join(where)}: choose another region or segment."


def candidate_shoppers(session: Session, region: str | None, segment: str | None) -> pd.DataFrame:
    """The database's shoppers, optionally of one region / segment; ValueError when none match."""
    query = select(Shopper.shopper_id, Shopper.region, Shopper.segment, Shopper.created_at)
    if region is not None:
        query = query.where(Shopper.region == region)
    if segment is not None:
        query = query.where(Shopper.segment == segment)
    rows = session.execute(query.order_by(Shopper.shopper_id)).all()
    if not rows:
        raise ValueError(_nobody_matches(region, segment))
    return pd.DataFrame(rows, columns=["shopper_id", "region", "segment", "created_at"])


def shopper_events(session: Session, shopper_ids: list[str], as_of: datetime) -> pd.DataFrame:
    """The events the features read, before `as_of`, in chunks of shopper ids: all purchases and
    redemptions, and the views and carts of the last SHORT_DAYS counted in SQL (column `n`, one row
    per shopper and type), since the features only count them: a shopper with 100,000 views costs no
    more to score than one with none."""
    cols = [getattr(BehaviorEvent, c) for c in EVENT_COLUMNS]
    counted = ("view", "cart")
    rows = []
    for start in range(0, len(shopper_ids), ID_CHUNK):
        ids = BehaviorEvent.shopper_id.in_(shopper_ids[start : start + ID_CHUNK])
        rows.extend(
            session.execute(
                select(*cols, literal(1).label("n")).where(
                    ids, BehaviorEvent.ts < as_of, BehaviorEvent.event_type.in_(("purchase", "coupon_redeem"))
                )
            ).all()
        )
        rows.extend(
            session.execute(
                select(
                    func.max(BehaviorEvent.ts),
                    BehaviorEvent.shopper_id,
                    BehaviorEvent.event_type,
                    literal(0.0),
                    func.count(),
                )
                .where(
                    ids,
                    BehaviorEvent.ts < as_of,
                    BehaviorEvent.ts >= as_of - timedelta(SHORT_DAYS),
                    BehaviorEvent.event_type.in_(counted),
                )
                .group_by(BehaviorEvent.shopper_id, BehaviorEvent.event_type)
            ).all()
        )
    return pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "n"])


def audience_features(
    session: Session,
    campaign: Campaign,
    *,
    region: str | None = None,
    segment: str | None = None,
    events_path: str | Path | None = None,
) -> pd.DataFrame:
    """History features of the candidate shoppers as of the campaign's start, on its channel (indexed
    by shopper_id), from the events table or, with `events_path`, an exported events Parquet."""
    shoppers = candidate_shoppers(session, region, segment)
    ids = shoppers["shopper_id"].tolist()
    if events_path is not None:
        events = pd.read_parquet(events_path, columns=list(EVENT_COLUMNS))
        events = events[events["shopper_id"].isin(ids)]
    else:
        events = shopper_events(session, ids, campaign.starts_at)
    return shopper_history_features(events, shoppers, campaign.starts_at, campaign.channel)


def current_features(
    session: Session, shopper_ids: list[str], as_of: datetime, channel: str, columns: list[str]
) -> pd.DataFrame:
    """The model's encoded `columns` for `shopper_ids` as of `as_of`, from the events table now (what
    a served uplift model scores with: it holds no shopper's features). Unknown shoppers are absent."""
    query = select(Shopper.shopper_id, Shopper.region, Shopper.segment, Shopper.created_at).where(
        Shopper.shopper_id.in_(list(shopper_ids))
    )
    shoppers = pd.DataFrame(
        session.execute(query).all(), columns=["shopper_id", "region", "segment", "created_at"]
    )
    if shoppers.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    events = shopper_events(session, shoppers["shopper_id"].tolist(), as_of)
    return encode_features(shopper_history_features(events, shoppers, as_of, channel), columns)
