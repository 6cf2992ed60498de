"""Delivery quotes: each partner's price (rate cards) and predicted delivery window (the delivery-time
model) from the warehouses that would ship the goods, and the partner the merchant's shipping rule
picks. Without a loaded model the windows are the partners' published day ranges, and the response
says so. `model_estimator` is what checkout times its parcels with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.catalog import Product
from commerce.errors import NotFound, OutOfStock
from commerce.logistics import LogisticsPartner, zone_of
from commerce.promotions import DiscountSeason
from commerce.services._util import not_found
from commerce.services.logistics import (
    DeliveryEstimator,
    DeliveryWindow,
    Lane,
    ShippingOption,
    apply_rule,
    get_shipping_rule,
    plan_fulfilment,
    product_shipping_costs,
    published_windows,
)
from features.logistics import delivery_features
from serving.model_store import ModelSnapshot
from serving.schemas.catalog import PromisedDeliveryOut


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
    in_stock: bool
    options: list[DeliveryOption]
    model: str | None  # "name vN" of the delivery model, None when the partners' day ranges were used


def peak_windows(session: Session) -> list[tuple[datetime, datetime]]:
    return [(s.starts_at, s.ends_at) for s in session.scalars(select(DiscountSeason))]


def model_estimator(session: Session, snapshot: ModelSnapshot) -> DeliveryEstimator | None:
    """Windows from the loaded delivery-time model (its 10/50/80/90% quantiles); None without one."""
    model = snapshot.recommender  # the delivery store's snapshots hold a DeliveryTimeModel
    if model is None:
        return None
    peaks = peak_windows(session)

    def estimate(lanes, at: datetime) -> list[DeliveryWindow]:
        parcels = pd.DataFrame(
            {
                "partner_id": [lane.partner_id for lane in lanes],
                "zone": [lane.zone for lane in lanes],
                "weight_g": [lane.weight_g for lane in lanes],
                "ordered_at": pd.Timestamp(at),
            }
        )
        q = model.predict_quantiles(delivery_features(parcels, peaks))
        return [
            DeliveryWindow(low, promise, high, median=median)
            for low, median, promise, high in q[["q10", "q50", "q80", "q90"]].to_numpy(dtype=float)
        ]

    return estimate


def delivery_quote(
    session: Session, snapshot: ModelSnapshot, product_id: str, region: str, quantity: int, at: datetime
) -> DeliveryQuote:
    """Every partner's cost and window for `quantity` units to `region`, from the warehouses checkout
    would ship them from (`plan_fulfilment`), and the partner the rule picks. Out of stock: the windows
    from the goods' usual origin (East China bonded zones, or abroad), `in_stock` false."""
    product = session.get(Product, product_id)
    if product is None or product.status != "listed":
        raise not_found("product", product_id)
    costs = {c.partner_id: c for c in product_shipping_costs(session, product_id, region, quantity)}
    if not costs:
        raise NotFound(f"no partner ships {product.fulfillment} goods to {region}", code="partner_not_found")
    estimator = model_estimator(session, snapshot)
    timing = estimator or published_windows(session)
    weight = next(iter(costs.values())).chargeable_weight_g
    try:
        chosen, plans, rule_text = plan_fulfilment(
            session, [product], {product_id: quantity}, region, timing, at
        )
        by_partner = {
            p.partner_id: (p.cost, p.window, p.lines[product_id][0][0].zone)
            for p in plans
            if p.partner_id in costs  # those with a rate card to the region
        }
        in_stock = True
    except OutOfStock:
        zone = zone_of(region)
        windows = timing([Lane(pid, zone, weight) for pid in costs], at)
        by_partner = {pid: (c.cost, w, zone) for (pid, c), w in zip(costs.items(), windows, strict=True)}
        options = [ShippingOption(pid, cost, w.promise) for pid, (cost, w, _) in by_partner.items()]
        chosen_id, rule_text = apply_rule(options, get_shipping_rule(session, product.merchant_id))
        in_stock = False
    else:
        chosen_id = chosen.partner_id
    partners = {p.partner_id: p for p in session.scalars(select(LogisticsPartner))}
    options = []
    for pid, (cost, w, _) in sorted(by_partner.items(), key=lambda kv: (kv[1][0], kv[0])):
        median = w.median if w.median is not None else (w.low + w.high) / 2
        options.append(
            DeliveryOption(
                pid,
                partners[pid].name,
                costs[pid].service_level if pid in costs else "",
                cost,
                w.low,
                median,
                w.promise,
                w.high,
                earliest=at + timedelta(days=w.low),
                latest=at + timedelta(days=w.high),
            )  # fmt: skip
        )
    label = None if estimator is None else f"{snapshot.name} v{snapshot.version}"
    return DeliveryQuote(
        product_id, by_partner[chosen_id][2], weight, rule_text, chosen_id, in_stock, options, label
    )


def promised_delivery(
    session: Session, snapshot: ModelSnapshot, product_id: str, region: str, at: datetime
) -> PromisedDeliveryOut | None:
    """The product card's promise for one unit; None when no warehouse holds it or no partner ships."""
    try:
        quote = delivery_quote(session, snapshot, product_id, region, 1, at)
    except NotFound:
        return None
    if not quote.in_stock:
        return None
    chosen = next(o for o in quote.options if o.partner_id == quote.chosen)
    return PromisedDeliveryOut(
        region=region,
        partner_id=chosen.partner_id,
        promised_window=(chosen.earliest, chosen.latest),
        arrives_by=at + timedelta(days=chosen.promise_days),
        model=quote.model,
    )
