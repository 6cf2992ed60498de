"""Logistics partners, their negotiated rate cards, merchants' shipping rules and delivery estimates."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from commerce.bulk import insert_ignore
from commerce.catalog import FULFILLMENT_MODES, Product, Stock
from commerce.errors import Conflict, NotFound, OutOfStock, ValidationError
from commerce.logistics import (
    LogisticsPartner,
    RateCard,
    ShippingRule,
    Warehouse,
    lane_zone,
    usable_by,
    zone_of,
)
from commerce.merchants import Merchant
from commerce.orders import LineAllocation, Order, OrderLine
from commerce.services._util import get_or_404, locked_or_404, required_text, stored_key
from commerce.services.pagination import Page, paginate
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

#: Partners' warehouses: bonded zones in three regions of China and overseas warehouses. The two
#: `-default` ones hold imported marketplace stock (commerce.importer.LOCATIONS).
DEFAULT_WAREHOUSES = (
    ("bonded-default", "Hangzhou bonded zone", "bonded", "cainiao-bonded", "Zhejiang", "CN"),
    ("bonded-south", "Guangzhou Nansha bonded zone", "bonded", "sf-bonded", "Guangdong", "CN"),
    ("bonded-north", "Tianjin bonded zone", "bonded", "yto-bonded", "Tianjin", "CN"),
    ("bonded-central", "Zhengzhou bonded zone", "bonded", "cainiao-bonded", "Henan", "CN"),
    ("overseas-default", "Cainiao overseas warehouse, Tokyo", "direct_mail", "cainiao-global", None, "JP"),
    ("overseas-us", "DHL fulfilment centre, Los Angeles", "direct_mail", "dhl-express", None, "US"),
    ("overseas-de", "EMS partner warehouse, Frankfurt", "direct_mail", "ems-intl", None, "DE"),
)


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
    keys = ("warehouse_id", "name", "mode", "partner_id", "region", "country")
    insert_ignore(
        session,
        Warehouse.__table__,
        [dict(zip(keys, w, strict=True)) for w in DEFAULT_WAREHOUSES],
        ["warehouse_id"],
    )


def _warehouses(mode: str | None, merchant_id: str | None) -> Select[tuple[Warehouse]]:
    """Warehouses by id; for `merchant_id`, only those it may use (`usable_by`): another merchant's own
    location is never listed to it (where that merchant keeps goods is its business)."""
    stmt = select(Warehouse).order_by(Warehouse.warehouse_id)
    if mode is not None:
        stmt = stmt.where(Warehouse.mode == mode)
    if merchant_id is not None:
        stmt = stmt.where(usable_by(merchant_id))
    return stmt


def list_warehouses(
    session: Session, mode: str | None = None, *, merchant_id: str | None = None
) -> list[Warehouse]:
    return list(session.scalars(_warehouses(mode, merchant_id)))


def locations_page(
    session: Session,
    *,
    merchant_id: str | None = None,
    owner: str | None = None,
    unowned: bool = False,
    mode: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Warehouse]:
    """One page of the locations `merchant_id` may use (all of them for None, an admin), narrowed to one
    owner's own or, with `unowned`, to platform and unclaimed ones: how an admin finds the locations
    registered before owners existed that a merchant should own."""
    if owner is not None and unowned:
        raise ValidationError("ask for one owner or for unowned locations, not both", code="invalid_filter")
    stmt = _warehouses(mode, merchant_id)
    if owner is not None:
        stmt = stmt.where(Warehouse.owner_merchant_id == stored_key(session, Merchant, owner))
    if unowned:
        stmt = stmt.where(Warehouse.owner_merchant_id.is_(None))
    return paginate(session, stmt, limit=limit, offset=offset)


def set_location_owner(
    session: Session, location: str, merchant_id: str | None
) -> tuple[Warehouse, str | None]:
    """Make a location one merchant's own (`merchant_id`) or a platform location again (None): how a
    location registered before owners, or one left shared, is claimed. Refused while another merchant's
    products have stock rows there, which would then sit at a location that is not theirs. Returns the
    location and its previous owner (read under the row lock, for the audit entry)."""
    warehouse = locked_or_404(session, Warehouse, location, "location")
    previous = warehouse.owner_merchant_id
    if merchant_id is not None:
        merchant_id = get_or_404(
            session, Merchant, stored_key(session, Merchant, merchant_id), "merchant"
        ).merchant_id
        others = session.scalar(
            select(func.count(Product.merchant_id.distinct()))
            .join(Stock, Stock.product_id == Product.product_id)
            .where(Stock.location == location, Product.merchant_id != merchant_id)
        )
        if others:
            raise Conflict(
                f"location {location!r} holds stock of {others} other merchant(s)", code="location_in_use"
            )
    warehouse.owner_merchant_id = merchant_id
    session.flush()
    return warehouse, previous


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
) -> tuple[ShippingRule, dict | None]:
    """A merchant ships with one partner, or with the cheapest that arrives within `max_days` at 80%.
    Returns the rule and the one it replaced (None at first), read under the merchant's row lock: two
    sets at once both inserted the merchant's first rule (the loser a 409 on PostgreSQL), and each read
    as replaced the rule from before the other."""
    locked_or_404(session, Merchant, merchant_id, "merchant", key_share=True)
    if (partner_id is None) == (max_days is None):
        raise ValidationError("give either partner_id or max_days", code="invalid_shipping_rule")
    if max_days is not None and not 1 <= max_days <= 60:
        raise ValidationError("max_days must be between 1 and 60", code="invalid_shipping_rule")
    if partner_id is not None and session.get(LogisticsPartner, partner_id) is None:
        raise NotFound(f"unknown logistics partner {partner_id!r}", code="partner_not_found")
    rule = session.get(ShippingRule, merchant_id, populate_existing=True)
    old = None if rule is None else {"partner_id": rule.partner_id, "max_days": rule.max_days}
    rule = rule or ShippingRule(merchant_id=merchant_id)
    rule.partner_id, rule.max_days = partner_id, max_days
    session.add(rule)
    session.flush()
    return rule, old


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


@dataclass(frozen=True)
class Lane:
    """A parcel to estimate: carrier, rated zone (`commerce.logistics.lane_zone`) and chargeable weight."""

    partner_id: str
    zone: str
    weight_g: int


@dataclass(frozen=True)
class DeliveryWindow:
    """Days from order to delivery: 10% quantile, 80% quantile (the promise) and 90% quantile."""

    low: float
    promise: float
    high: float
    median: float | None = None

    def dates(self, at: datetime) -> tuple[datetime, datetime]:
        """The window as dates: from the 10% to the 90% quantile."""
        at = as_utc(at)
        return at + timedelta(days=self.low), at + timedelta(days=self.high)


#: Predicts a window per lane for parcels ordered at a time. The serving layer passes one backed by the
#: delivery-time model; `published_windows` is the fallback from partners' published day ranges.
DeliveryEstimator = Callable[[Sequence[Lane], datetime], list[DeliveryWindow]]


def published_windows(session: Session) -> DeliveryEstimator:
    """Windows from each partner's published min/max days (no model loaded)."""
    partners = {p.partner_id: p for p in session.scalars(select(LogisticsPartner))}

    def estimate(lanes: Sequence[Lane], at: datetime) -> list[DeliveryWindow]:
        return [
            DeliveryWindow(p.min_days, p.max_days, p.max_days, median=(p.min_days + p.max_days) / 2)
            for p in (partners[lane.partner_id] for lane in lanes)
        ]

    return estimate


@dataclass(frozen=True)
class ShippingOption:
    """One way to ship (a partner, or a warehouse with its carrier): its cost and 80% days."""

    key: str
    cost: Decimal
    promise_days: float


def fastest(options: Sequence[ShippingOption]) -> ShippingOption:
    if not options:
        raise ValueError("no shipping options")
    return min(options, key=lambda o: (o.promise_days, o.cost, o.key))


def cheapest_within(options: Sequence[ShippingOption], max_days: float | None) -> ShippingOption:
    """The merchant's rule: the cheapest option whose 80% quantile is within `max_days`, so "arrives
    within N days" holds for at least 80% of orders; the fastest when none can promise it (or no rule)."""
    on_time = [] if max_days is None else [o for o in options if o.promise_days <= max_days]
    if not on_time:
        return fastest(options)
    return min(on_time, key=lambda o: (o.cost, o.promise_days, o.key))


@dataclass(frozen=True)
class StockSource:
    """A warehouse stock row that could serve a line, with its shipping cost and window to the buyer."""

    stock_id: int
    warehouse_id: str
    available: int
    zone: str  # the lane it ships as (commerce.logistics.lane_zone)
    cost: Decimal
    window: DeliveryWindow


def allocate_line(sources: Sequence[StockSource], quantity: int, max_days: float | None) -> list[tuple]:
    """Which warehouses a line ships from: [(source, units)].

    One warehouse when any can supply every unit: the one the merchant's rule picks among those
    (`cheapest_within`; soonest by default). Otherwise the line is split: the rule's pick among the
    remaining warehouses gives all it has, then the next, until the line is covered. Raises
    ValueError when all of them together hold too few units.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    stocked = [s for s in sources if s.available > 0]
    if sum(s.available for s in stocked) < quantity:
        raise ValueError("not enough stock")

    def pick(candidates: list[StockSource]) -> StockSource:
        by_key = {s.warehouse_id: s for s in candidates}
        options = [ShippingOption(s.warehouse_id, s.cost, s.window.promise) for s in candidates]
        return by_key[cheapest_within(options, max_days).key]

    whole = [s for s in stocked if s.available >= quantity]
    if whole:
        return [(pick(whole), quantity)]
    plan, left = [], quantity
    while left > 0:
        source = pick(stocked)
        stocked.remove(source)
        units = min(source.available, left)
        plan.append((source, units))
        left -= units
    return plan


def stock_sources(
    session: Session,
    product: Product,
    quantity: int,
    partner_ids: Sequence[str],
    region: str,
    estimator: DeliveryEstimator,
    at: datetime,
) -> dict[str, list[StockSource]]:
    """Per partner, the product's stock rows with units free in warehouses of its mode (bonded goods
    only from bonded zones, direct mail only from abroad), each priced and timed from its warehouse to
    `region` with that partner. One estimator call for every partner and warehouse."""
    stmt = (
        select(Stock.id, Stock.quantity - Stock.reserved, Warehouse)
        .join(Warehouse, Warehouse.warehouse_id == Stock.location)
        .where(Stock.product_id == product.product_id, Warehouse.mode == product.fulfillment)
        .order_by(Stock.id)
    )
    rows = [r for r in session.execute(stmt).all() if r[1] > 0]
    if not rows:
        return {pid: [] for pid in partner_ids}
    weight = chargeable_weight_g(product.weight_g, product.volume_cm3, quantity)
    zones = [lane_zone(product.fulfillment, w.region, region) for _, _, w in rows]
    cards = {
        (card.partner_id, card.zone): card
        for card in session.scalars(
            select(RateCard).where(RateCard.partner_id.in_(partner_ids), RateCard.zone.in_(set(zones)))
        )
    }
    lanes = [Lane(pid, z, weight) for pid in partner_ids for z in zones]
    windows = iter(estimator(lanes, at))
    return {
        pid: [
            StockSource(
                stock_id,
                w.warehouse_id,
                available,
                z,
                rate_cost(cards[pid, z], weight) if (pid, z) in cards else Decimal("Infinity"),
                next(windows),
            )  # fmt: skip
            for (stock_id, available, w), z in zip(rows, zones, strict=True)
        ]
        for pid in partner_ids
    }


def merchant_bonded_sales(session: Session, merchant_id: str, since: datetime) -> list[tuple]:
    """(product_id, location, paid_at, quantity) of the merchant's paid bonded order lines since `since`."""
    get_or_404(session, Merchant, merchant_id, "merchant")
    rows = session.execute(
        select(OrderLine.product_id, Stock.location, Order.paid_at, LineAllocation.quantity)
        .join(Order, Order.order_id == OrderLine.order_id)
        .join(LineAllocation, LineAllocation.order_line_id == OrderLine.id)
        .join(Stock, Stock.id == LineAllocation.stock_id)
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


def apply_rule(
    options: Sequence[ShippingOption], rule: ShippingRule | None, requested: str | None = None
) -> tuple[str, str]:
    """The partner that ships and why: (partner id, "requested" | "partner:ID" | "within:N" | "fastest")."""
    if requested is not None:
        return requested, "requested"
    if rule is not None and rule.partner_id is not None:
        return rule.partner_id, f"partner:{rule.partner_id}"
    max_days = None if rule is None else rule.max_days
    return cheapest_within(options, max_days).key, "fastest" if max_days is None else f"within:{max_days}"


def slowest(windows: Sequence[DeliveryWindow]) -> DeliveryWindow:
    """An order arrives with its last parcel: each quantile the largest of its parcels' (an upper bound)."""
    medians = [w.median for w in windows if w.median is not None]
    return DeliveryWindow(
        max(w.low for w in windows),
        max(w.promise for w in windows),
        max(w.high for w in windows),
        median=max(medians) if len(medians) == len(windows) else None,
    )


@dataclass(frozen=True)
class FulfilmentPlan:
    """How an order would ship with one partner: each line's warehouses and units, the shipping cost
    (each line's parcels priced for the whole line, a ranking figure) and the slowest parcel's window."""

    partner_id: str
    cost: Decimal
    window: DeliveryWindow
    lines: dict[str, list[tuple[StockSource, int]]]


def plan_fulfilment(
    session: Session,
    products: Sequence[Product],
    wanted: dict[str, int],
    region: str,
    estimator: DeliveryEstimator,
    at: datetime,
    *,
    partner_id: str | None = None,
) -> tuple[FulfilmentPlan, list[FulfilmentPlan], str]:
    """Pick the partner and, per line, the warehouses: (chosen plan, every partner's plan, rule text).

    With each partner of the goods' mode, each line ships from the warehouses `allocate_line` picks.
    The partner: the one requested, else the merchant's rule when the cart is one merchant's (a fixed
    partner, or the cheapest plan within N days at 80%), else the soonest. Raises OutOfStock when the
    warehouses of the goods' mode hold too few units. Reads stock as it is: checkout locks rows first.
    """
    modes = {p.fulfillment for p in products}
    if len(modes) != 1:
        raise ValidationError(
            "bonded and direct-mail goods ship as separate orders", code="mixed_fulfillment"
        )
    mode = modes.pop()
    merchants = {p.merchant_id for p in products}
    rule = get_shipping_rule(session, merchants.pop()) if len(merchants) == 1 else None
    max_days = rule.max_days if rule is not None else None
    fixed = partner_id if partner_id is not None else (rule.partner_id if rule is not None else None)
    if fixed is not None:
        choose_partner(session, mode, fixed)  # exists and carries this mode
    partners = list_partners(session, mode)
    if not partners:
        raise NotFound(f"no logistics partner handles {mode} goods", code="partner_not_found")
    ids = [partner.partner_id for partner in partners]
    by_product = {
        p.product_id: stock_sources(session, p, wanted[p.product_id], ids, region, estimator, at)
        for p in sorted(products, key=lambda p: p.product_id)
    }
    plans = []
    for partner in partners:
        lines = {}
        for product in sorted(products, key=lambda p: p.product_id):
            qty = wanted[product.product_id]
            sources = by_product[product.product_id][partner.partner_id]
            try:
                lines[product.product_id] = allocate_line(sources, qty, max_days)
            except ValueError:
                raise OutOfStock(
                    f"not enough stock of {product.product_id!r} for {qty} units", code="out_of_stock"
                ) from None
        parcels = [source for plan in lines.values() for source, _ in plan]
        window = slowest([s.window for s in parcels])
        cost = sum((s.cost for s in parcels), Decimal("0.00"))
        plans.append(FulfilmentPlan(partner.partner_id, cost, window, lines))
    # a partner without a rate card for a lane cannot be priced: the priced ones compete when there are any
    priced = [plan for plan in plans if plan.cost.is_finite()] or plans
    options = [ShippingOption(plan.partner_id, plan.cost, plan.window.promise) for plan in priced]
    chosen, rule_text = apply_rule(options, rule, partner_id)
    return next(plan for plan in plans if plan.partner_id == chosen), plans, rule_text
