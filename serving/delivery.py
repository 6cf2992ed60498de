"""Delivery quotes: each partner's price (rate cards) and predicted delivery window (the delivery-time
model), and the partner the merchant's shipping rule picks. Without a loaded model the windows are the
partners' published day ranges, and the response says so."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.catalog import Product
from commerce.errors import NotFound
from commerce.logistics import LogisticsPartner
from commerce.promotions import DiscountSeason
from commerce.services.logistics import get_shipping_rule, product_shipping_costs
from features.logistics import delivery_features
from models.logistics import ShippingOption, cheapest_within, fastest
from serving.model_store import ModelSnapshot


@dataclass(frozen=True)
class DeliveryOption:
    partner_id: str
    name: str
    service_level: str
    cost: Decimal
    days_low: float  # 10% quantile
    days_median: float
    promise_days: float  # 80% quantile: "arrives within" with 80% confidence
    days_high: float  # 90% quantile
    earliest: datetime
    latest: datetime


@dataclass(frozen=True)
class DeliveryQuote:
    product_id: str
    zone: str
    chargeable_weight_g: int
    rule: str
    chosen: str
    options: list[DeliveryOption]
    model: str | None  # "name vN" of the delivery model, None when the partners' day ranges were used


def peak_windows(session: Session) -> list[tuple[datetime, datetime]]:
    return [(s.starts_at, s.ends_at) for s in session.scalars(select(DiscountSeason))]


def delivery_quote(
    session: Session, snapshot: ModelSnapshot, product_id: str, region: str, quantity: int, at: datetime
) -> DeliveryQuote:
    product = session.get(Product, product_id)
    if product is None or product.status != "listed":
        raise NotFound(f"unknown product {product_id!r}", code="product_not_found")
    costs = product_shipping_costs(session, product_id, region, quantity)
    if not costs:
        raise NotFound(f"no partner ships {product.fulfillment} goods to {region}", code="partner_not_found")
    partners = {p.partner_id: p for p in session.scalars(select(LogisticsPartner))}
    model = snapshot.recommender  # the delivery store's snapshots hold a DeliveryTimeModel
    if model is not None:
        parcels = pd.DataFrame(
            {
                "partner_id": [c.partner_id for c in costs],
                "zone": costs[0].zone,
                "weight_g": costs[0].chargeable_weight_g,
                "ordered_at": pd.Timestamp(at),
            }
        )
        q = model.predict_quantiles(delivery_features(parcels, peak_windows(session)))
        days = q[["q10", "q50", "q80", "q90"]].to_numpy(dtype=float)
    else:
        days = [
            (p.min_days, (p.min_days + p.max_days) / 2, p.max_days, p.max_days)
            for p in (partners[c.partner_id] for c in costs)
        ]
    options = [
        DeliveryOption(
            c.partner_id,
            c.name,
            c.service_level,
            c.cost,
            *map(float, d),
            earliest=at + timedelta(days=float(d[0])),
            latest=at + timedelta(days=float(d[3])),
        )  # fmt: skip
        for c, d in zip(costs, days, strict=True)
    ]
    shopping = [ShippingOption(o.partner_id, o.cost, o.promise_days) for o in options]
    rule = get_shipping_rule(session, product.merchant_id)
    if (
        rule is not None
        and rule.partner_id is not None
        and rule.partner_id in {o.partner_id for o in options}
    ):
        chosen, rule_text = rule.partner_id, f"partner:{rule.partner_id}"
    elif rule is not None and rule.max_days is not None:
        chosen, rule_text = cheapest_within(shopping, rule.max_days).partner_id, f"within:{rule.max_days}"
    else:
        chosen, rule_text = fastest(shopping).partner_id, "fastest"
    label = None if model is None else f"{snapshot.name} v{snapshot.version}"
    return DeliveryQuote(
        product_id, costs[0].zone, costs[0].chargeable_weight_g, rule_text, chosen, options, label
    )
