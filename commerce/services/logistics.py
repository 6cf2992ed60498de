"""Logistics partners, their negotiated rate cards, merchants' shipping rules and delivery estimates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.bulk import insert_ignore
from commerce.catalog import FULFILLMENT_MODES, Product, Stock
from commerce.errors import NotFound, ValidationError
from commerce.logistics import LogisticsPartner, RateCard, ShippingRule, zone_of
from commerce.merchants import Merchant
from commerce.orders import Order, OrderLine
from commerce.services._util import get_or_404, required_text
from commerce.sqltypes import as_utc, round_fen

#: Seed partners: bonded goods ship from a domestic bonded zone (1-3 days), direct mail from abroad (4-7).
DEFAULT_PARTNERS = (
    {
        "partner_id": "cainiao-bonded",
        "name": "Cainiao Bonded",
        "mode": "bonded",
        "min_days": 1,
        "max_days": 2,
    },
    {"partner_id": "sf-bonded", "name": "SF Express Bonded", "mode": "bonded", "min_days": 1, "max_days": 3},
    {
        "partner_id": "cainiao-global",
        "name": "Cainiao Global Direct",
        "mode": "direct_mail",
        "min_days": 4,
        "max_days": 7,
    },
    {
        "partner_id": "ems-intl",
        "name": "EMS International",
        "mode": "direct_mail",
        "min_days": 5,
        "max_days": 7,
    },
    {"partner_id": "yto-bonded", "name": "YTO Bonded", "mode": "bonded", "min_days": 2, "max_days": 5},
    {"partner_id": "dhl-express", "name": "DHL Express", "mode": "direct_mail", "min_days": 3, "max_days": 5},
)

#: Negotiated rates per partner: (service level, first 1 kg, each further 0.5 kg, fuel surcharge,
#: platform discount). Bonded partners ship from East China bonded zones, so farther zones cost more;
#: direct mail is priced from abroad, flat except for remote zones.
DEFAULT_RATES = {
    "sf-bonded": ("express", "18.00", "5.00", "0.08", "0.15"),
    "cainiao-bonded": ("standard", "10.00", "3.00", "0.05", "0.20"),
    "yto-bonded": ("economy", "7.00", "2.00", "0.05", "0.10"),
    "dhl-express": ("express", "95.00", "22.00", "0.18", "0.25"),
    "cainiao-global": ("standard", "48.00", "14.00", "0.10", "0.20"),
    "ems-intl": ("economy", "38.00", "11.00", "0.00", "0.10"),
}
ZONE_PRICE_FACTOR = {
    "bonded": {
        "east": "1.0", "central": "1.15", "north": "1.2", "south": "1.2", "west": "1.4", "remote": "2.0",
    },
    "direct_mail": {
        "east": "1.0", "central": "1.0", "north": "1.0", "south": "1.0", "west": "1.05", "remote": "1.3",
    },
}  # fmt: skip
VOLUMETRIC_DIVISOR_CM3_PER_G = 6  # carriers' 6,000 cm3 per kg


def default_rate_cards() -> list[dict]:
    """Rate-card rows for the default partners: DEFAULT_RATES priced per zone by ZONE_PRICE_FACTOR."""
    modes = {p["partner_id"]: p["mode"] for p in DEFAULT_PARTNERS}
    cards = []
    for partner_id, (level, first, extra, surcharge, discount) in DEFAULT_RATES.items():
        for zone, factor in ZONE_PRICE_FACTOR[modes[partner_id]].items():
            cards.append(
                {
                    "partner_id": partner_id,
                    "zone": zone,
                    "service_level": level,
                    "first_weight_g": 1000,
                    "first_price": round_fen(Decimal(first) * Decimal(factor)),
                    "additional_unit_g": 500,
                    "additional_price": round_fen(Decimal(extra) * Decimal(factor)),
                    "surcharge_rate": Decimal(surcharge),
                    "discount_rate": Decimal(discount),
                }
            )
    return cards


def seed_default_partners(session: Session) -> None:
    """Insert the default partners and their rate cards unless they exist (idempotent)."""
    insert_ignore(session, LogisticsPartner.__table__, [dict(p) for p in DEFAULT_PARTNERS], ["partner_id"])
    insert_ignore(session, RateCard.__table__, default_rate_cards(), ["partner_id", "zone"])


@dataclass(frozen=True)
class ShippingCost:
    partner_id: str
    name: str
    mode: str
    zone: str
    service_level: str
    chargeable_weight_g: int
    cost: Decimal


def chargeable_weight_g(weight_g: int, volume_cm3: int | None, quantity: int = 1) -> int:
    """The larger of actual and volumetric weight of `quantity` units."""
    if weight_g <= 0 or quantity <= 0 or (volume_cm3 is not None and volume_cm3 <= 0):
        raise ValidationError("weight, volume and quantity must be positive", code="invalid_parcel")
    volumetric = math.ceil((volume_cm3 or 0) * quantity / VOLUMETRIC_DIVISOR_CM3_PER_G)
    return max(weight_g * quantity, volumetric)


def rate_cost(card: RateCard, weight_g: int) -> Decimal:
    extra_units = max(0, math.ceil((weight_g - card.first_weight_g) / card.additional_unit_g))
    base = card.first_price + extra_units * card.additional_price
    return round_fen(base * (1 + card.surcharge_rate) * (1 - card.discount_rate))


def shipping_costs(
    session: Session, mode: str, region: str, weight_g: int, volume_cm3: int | None = None, quantity: int = 1
) -> list[ShippingCost]:
    """What each partner serving `mode` charges to ship the parcel to `region`, cheapest first."""
    if mode not in FULFILLMENT_MODES:
        raise ValidationError(f"mode must be one of {FULFILLMENT_MODES}", code="invalid_fulfillment")
    zone = zone_of(region)
    weight = chargeable_weight_g(weight_g, volume_cm3, quantity)
    rows = session.execute(
        select(LogisticsPartner, RateCard)
        .join(RateCard, RateCard.partner_id == LogisticsPartner.partner_id)
        .where(LogisticsPartner.mode == mode, RateCard.zone == zone)
        .order_by(LogisticsPartner.partner_id)
    ).all()
    costs = [
        ShippingCost(p.partner_id, p.name, p.mode, zone, card.service_level, weight, rate_cost(card, weight))
        for p, card in rows
    ]
    return sorted(costs, key=lambda c: (c.cost, c.partner_id))


def product_shipping_costs(
    session: Session, product_id: str, region: str, quantity: int = 1
) -> list[ShippingCost]:
    product = get_or_404(session, Product, product_id, "product")
    return shipping_costs(
        session, product.fulfillment, region, product.weight_g, product.volume_cm3, quantity
    )


def set_shipping_rule(
    session: Session, merchant_id: str, *, partner_id: str | None = None, max_days: int | None = None
) -> ShippingRule:
    """A merchant ships with one partner, or with the cheapest that arrives within `max_days` at 80%."""
    get_or_404(session, Merchant, merchant_id, "merchant")
    if (partner_id is None) == (max_days is None):
        raise ValidationError("give either partner_id or max_days", code="invalid_shipping_rule")
    if max_days is not None and not 1 <= max_days <= 60:
        raise ValidationError("max_days must be between 1 and 60", code="invalid_shipping_rule")
    if partner_id is not None and session.get(LogisticsPartner, partner_id) is None:
        raise NotFound(f"unknown logistics partner {partner_id!r}", code="partner_not_found")
    rule = session.get(ShippingRule, merchant_id) or ShippingRule(merchant_id=merchant_id)
    rule.partner_id, rule.max_days = partner_id, max_days
    session.add(rule)
    session.flush()
    return rule


def get_shipping_rule(session: Session, merchant_id: str) -> ShippingRule | None:
    return session.get(ShippingRule, merchant_id)


def create_partner(
    session: Session, partner_id: str, name: str, mode: str, min_days: int, max_days: int
) -> LogisticsPartner:
    if mode not in FULFILLMENT_MODES:
        raise ValidationError(f"mode must be one of {FULFILLMENT_MODES}", code="invalid_fulfillment")
    if not 0 <= min_days <= max_days:
        raise ValidationError("need 0 <= min_days <= max_days", code="invalid_days")
    partner = LogisticsPartner(
        partner_id=required_text(partner_id, "partner_id", 64),
        name=required_text(name, "name", 200),
        mode=mode,
        min_days=min_days,
        max_days=max_days,
    )
    session.add(partner)
    session.flush()
    return partner


def list_partners(session: Session, mode: str | None = None) -> list[LogisticsPartner]:
    stmt = select(LogisticsPartner).order_by(LogisticsPartner.min_days, LogisticsPartner.partner_id)
    if mode is not None:
        stmt = stmt.where(LogisticsPartner.mode == mode)
    return list(session.scalars(stmt))


def choose_partner(session: Session, mode: str, partner_id: str | None = None) -> LogisticsPartner:
    """The requested partner (must serve `mode`), else the fastest one for `mode`."""
    if partner_id is not None:
        partner = session.get(LogisticsPartner, partner_id)
        if partner is None:
            raise NotFound(f"unknown logistics partner {partner_id!r}", code="partner_not_found")
        if partner.mode != mode:
            raise ValidationError(f"partner {partner_id!r} does not handle {mode} goods", code="partner_mode")
        return partner
    partners = list_partners(session, mode)
    if not partners:
        raise NotFound(f"no logistics partner handles {mode} goods", code="partner_not_found")
    return partners[0]


def estimate_delivery(partner: LogisticsPartner, at: datetime) -> tuple[datetime, datetime]:
    """Earliest and latest delivery time for an order placed at `at`."""
    at = as_utc(at)
    return at + timedelta(days=partner.min_days), at + timedelta(days=partner.max_days)


def merchant_bonded_sales(session: Session, merchant_id: str, since: datetime) -> list[tuple]:
    """(product_id, location, paid_at, quantity) of the merchant's paid bonded order lines since `since`."""
    get_or_404(session, Merchant, merchant_id, "merchant")
    rows = session.execute(
        select(OrderLine.product_id, Stock.location, Order.paid_at, OrderLine.quantity)
        .join(Order, Order.order_id == OrderLine.order_id)
        .join(Stock, Stock.id == OrderLine.stock_id)
        .where(
            OrderLine.merchant_id == merchant_id,
            Order.fulfillment == "bonded",
            Order.paid_at.is_not(None),
            Order.paid_at >= since,
        )
    )
    return [tuple(r) for r in rows]


def merchant_bonded_stock(session: Session, merchant_id: str) -> list[tuple[str, str, int]]:
    """(product_id, location, unreserved units) of the merchant's listed bonded products."""
    rows = session.execute(
        select(Stock.product_id, Stock.location, Stock.quantity - Stock.reserved)
        .join(Product, Product.product_id == Stock.product_id)
        .where(
            Product.merchant_id == merchant_id, Product.fulfillment == "bonded", Product.status == "listed"
        )
        .order_by(Stock.product_id, Stock.location)
    )
    return [tuple(r) for r in rows]
