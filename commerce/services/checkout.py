"""Cart -> order: prices, coupon, cross-border tax and limits, and stock reservation without overselling.

Stock: each line is served by one or more warehouse stock rows (commerce.services.logistics
.plan_fulfilment, which may split a line when no warehouse holds all its units). The cart's rows are
locked with SELECT ... FOR UPDATE in primary-key order (PostgreSQL; one global order, which payment and
release follow too, means two transactions can never deadlock), then each reservation is a conditional
`UPDATE stock SET reserved = reserved + n WHERE id = :id AND quantity - reserved >= n` whose row count is
checked. On SQLite the transaction is BEGIN IMMEDIATE (commerce.db), which serializes writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from commerce.catalog import Product, Stock
from commerce.errors import LimitExceeded, OutOfStock, ValidationError
from commerce.orders import AnnualSpend, LineAllocation, Order, OrderLine, OrderStatusChange
from commerce.services import coupons as coupon_service
from commerce.services._util import get_or_404
from commerce.services.catalog import category_paths, sellable_products
from commerce.services.logistics import (
    DeliveryEstimator,
    FulfilmentPlan,
    choose_partner,
    plan_fulfilment,
    published_windows,
)
from commerce.services.pricing import effective_prices
from commerce.shoppers import Shopper
from commerce.sqltypes import as_utc, round_fen, utcnow
from commerce.tax import ANNUAL_LIMIT, TaxRates, allocate, line_tax, order_regime

#: The units of one product an order may hold, and so the most a stock probe may ask about (the delivery
#: quote's `quantity`, a cart line): public, the same for every product. Carts of up to 100 lines of 999
#: units answered "in stock" or 409 for any quantity, so ten probes found a rival's exact stock; now every
#: stock from this threshold up answers every probe alike (docs/commerce.md). Cross-border retail goods
#: are for personal use, and the 5,000 CNY order limit stops most orders well before it anyway.
MAX_UNITS_PER_PRODUCT = 99


@dataclass(frozen=True)
class CartLine:
    product_id: str
    quantity: int


def customs_year(at: datetime) -> int:
    """The calendar year the annual limit counts in: China Standard Time (UTC+8, no DST)."""
    from zoneinfo import ZoneInfo

    return as_utc(at).astimezone(ZoneInfo("Asia/Shanghai")).year


def _merge(lines: Sequence[CartLine]) -> dict[str, int]:
    if not lines:
        raise ValidationError("the cart is empty", code="empty_cart")
    merged: dict[str, int] = {}
    for line in lines:
        q = line.quantity
        if isinstance(q, bool) or not isinstance(q, int) or q < 1:
            raise ValidationError("quantity must be a positive integer", code="invalid_quantity")
        merged[line.product_id] = merged.get(line.product_id, 0) + q
    if over := sorted(pid for pid, q in merged.items() if q > MAX_UNITS_PER_PRODUCT):
        raise ValidationError(
            f"at most {MAX_UNITS_PER_PRODUCT} units of one product per order: {over}", code="invalid_quantity"
        )
    return merged


def _reserve(session: Session, plan: FulfilmentPlan) -> None:
    """Reserve the plan's units, each warehouse row by a conditional UPDATE in id order."""
    parcels = sorted((source.stock_id, units) for line in plan.lines.values() for source, units in line)
    for stock_id, units in parcels:
        done = session.execute(
            update(Stock.__table__)
            .where(Stock.id == stock_id, Stock.quantity - Stock.reserved >= units)
            .values(reserved=Stock.reserved + units)
        ).rowcount
        if done != 1:  # the rows are locked (SQLite: the database is), so only a broken invariant
            raise OutOfStock(f"stock row {stock_id} changed while reserving", code="out_of_stock")


@dataclass(frozen=True)
class QuoteLine:
    product_id: str
    merchant_id: str
    quantity: int
    list_price: Decimal
    unit_price: Decimal
    gross: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    commission: Decimal
    margin: Decimal

    @property
    def net(self) -> Decimal:
        return self.gross - self.discount


@dataclass(frozen=True)
class Quote:
    """What an order would cost now, line by line; `checkout` turns exactly this into an order."""

    shopper_id: str
    lines: list[QuoteLine]
    fulfillment: str
    partner_id: str | None  # the partner asked for; None: checkout plans it (merchant rule, soonest)
    tax_regime: str
    coupon_id: str | None

    @property
    def goods_total(self) -> Decimal:
        return sum((line.gross for line in self.lines), Decimal("0.00"))

    @property
    def discount_total(self) -> Decimal:
        return sum((line.discount for line in self.lines), Decimal("0.00"))

    @property
    def tax_total(self) -> Decimal:
        return sum((line.tax for line in self.lines), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal("0.00"))


def committed_value(session: Session, identity_digest: str, year: int) -> Decimal:
    """Goods value a person has paid for this customs year plus what their open unpaid orders would add:
    an order the annual limit will refuse at payment must not hold stock meanwhile."""
    spent = session.scalar(
        select(AnnualSpend.amount).where(
            AnnualSpend.identity_digest == identity_digest, AnnualSpend.year == year
        )
    ) or Decimal(0)
    pending = session.scalar(
        select(func.round(func.coalesce(func.sum(Order.goods_total - Order.discount_total), 0), 2)).where(
            Order.identity_digest == identity_digest, Order.status == "pending_payment"
        )
    )
    return spent + round_fen(Decimal(str(pending)))


def check_open_orders(session: Session, shopper_id: str, max_open: int) -> None:
    """Refuse a new order when the shopper already holds `max_open` unpaid ones.

    The shopper row is locked first (PostgreSQL; SQLite serializes writers), so concurrent checkouts of
    one shopper count one after another and the bound holds exactly.
    """
    session.execute(select(Shopper.shopper_id).where(Shopper.shopper_id == shopper_id).with_for_update())
    open_orders = session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.shopper_id == shopper_id, Order.status == "pending_payment")
    )
    if open_orders >= max_open:
        raise LimitExceeded(
            f"the shopper already has {open_orders} unpaid orders (at most {max_open}); pay or cancel one",
            code="too_many_pending_orders",
        )


def quote(
    session: Session,
    shopper_id: str,
    lines: Sequence[CartLine],
    *,
    coupon_id: str | None = None,
    partner_id: str | None = None,
    at: datetime | None = None,
) -> Quote:
    """Price a cart without writing anything: effective prices, coupon, tax per line.

    Raises the same errors checkout would, except for stock and coupon-limit races decided at checkout.
    """
    at = as_utc(at or utcnow())
    wanted = _merge(lines)
    shopper = get_or_404(session, Shopper, shopper_id, "shopper")
    identity = shopper.identity
    if identity is None:
        raise ValidationError(
            "cross-border orders need the buyer's verified real name and ID number", code="identity_required"
        )
    products = {p.product_id: p for p in sellable_products(session, wanted)}
    if missing := [pid for pid in wanted if pid not in products]:
        # one answer whether a product does not exist or is not public (a pending merchant's, a delisted
        # one): the cart must not tell which ids exist where the product page answers 404 for both
        raise ValidationError(f"products not for sale: {missing}", code="not_sellable")
    modes = {p.fulfillment for p in products.values()}
    if len(modes) != 1:
        raise ValidationError(
            "bonded and direct-mail goods ship as separate orders", code="mixed_fulfillment"
        )
    mode = modes.pop()
    if partner_id is not None:
        choose_partner(session, mode, partner_id)  # it must exist and carry this mode

    ordered = [products[pid] for pid in wanted]
    prices = effective_prices(session, ordered, at)
    gross = [round_fen(prices[p.product_id] * wanted[p.product_id]) for p in ordered]
    discounts = [Decimal("0.00")] * len(ordered)
    if coupon_id is not None:
        coupon = coupon_service.get_coupon(session, coupon_id)  # `ＳＡＶＥ１０` as typed is `SAVE10`
        coupon_id = coupon.coupon_id
        coupon_service.check_usable(session, coupon, shopper_id, at)
        paths = category_paths(session)
        priced = [
            coupon_service.PricedLine(p.product_id, p.merchant_id, paths[p.category_id], g)
            for p, g in zip(ordered, gross, strict=True)
        ]
        amount, eligible = coupon_service.discount_for(coupon, priced)
        for i, share in zip(eligible, allocate(amount, [gross[i] for i in eligible]), strict=True):
            discounts[i] = share
    nets = [g - d for g, d in zip(gross, discounts, strict=True)]
    regime = order_regime([(n, wanted[p.product_id]) for n, p in zip(nets, ordered, strict=True)])
    goods_value = sum(nets, Decimal(0))
    if committed_value(session, identity.id_digest, customs_year(at)) + goods_value > ANNUAL_LIMIT:
        # No figures: a storefront may quote for any shopper, and what a person spent is theirs alone.
        raise LimitExceeded(
            f"this order would take the buyer past the {ANNUAL_LIMIT} CNY annual limit "
            "(paid orders and open unpaid orders count)",
            code="annual_limit_exceeded",
        )
    quote_lines = []
    for product, g, d, n in zip(ordered, gross, discounts, nets, strict=True):
        cat, qty = product.category, wanted[product.product_id]
        tax = line_tax(n, TaxRates(cat.vat_rate, cat.consumption_tax_rate, cat.tariff_rate), regime)
        quote_lines.append(
            QuoteLine(
                product_id=product.product_id,
                merchant_id=product.merchant_id,
                quantity=qty,
                list_price=product.price,
                unit_price=prices[product.product_id],
                gross=g,
                discount=d,
                tax=tax,
                total=n + tax,
                commission=Decimal("0.00") if product.self_operated else round_fen(n * cat.commission_rate),
                margin=round_fen(n - product.cost_price * qty) if product.self_operated else Decimal("0.00"),
            )
        )
    return Quote(shopper_id, quote_lines, mode, partner_id, regime, coupon_id)


def checkout(
    session: Session,
    shopper_id: str,
    lines: Sequence[CartLine],
    *,
    coupon_id: str | None = None,
    partner_id: str | None = None,
    at: datetime | None = None,
    max_open_pending: int | None = None,
    estimator: DeliveryEstimator | None = None,
) -> Order:
    """Turn a cart into a `pending_payment` order, reserving stock and redeeming the coupon.

    Input and rules are checked first (`quote`, no writes); stock and coupon limits, which concurrent
    checkouts compete for, are then taken by conditional updates. Run inside a transaction: on any error
    roll back (commerce.db.transaction does), which leaves the database unchanged. The annual limit is
    checked here for a quick answer (open unpaid orders count) and enforced atomically at payment.
    With `max_open_pending`, a shopper holding that many unpaid orders is refused (callers pass their
    configured bound; expire stale orders first, commerce.services.pending).
    The partner and each line's warehouse(s) are planned by `plan_fulfilment` for the shopper's region,
    timed by `estimator` (the delivery-time model; partners' published day ranges when None); the order
    keeps the predicted window (10%-90%) of its slowest parcel.
    """
    at = as_utc(at or utcnow())
    if max_open_pending is not None:
        check_open_orders(session, shopper_id, max_open_pending)
    q = quote(session, shopper_id, lines, coupon_id=coupon_id, partner_id=partner_id, at=at)
    shopper = session.get(Shopper, shopper_id)
    wanted = {line.product_id: line.quantity for line in q.lines}
    session.execute(  # lock the cart's stock rows in id order: the order payment and release use too
        select(Stock.id).where(Stock.product_id.in_(sorted(wanted))).order_by(Stock.id).with_for_update()
    ).all()
    products = list(session.scalars(select(Product).where(Product.product_id.in_(sorted(wanted)))))
    plan, _, _ = plan_fulfilment(
        session,
        products,
        wanted,
        shopper.region,
        estimator or published_windows(session),
        at,
        partner_id=q.partner_id,
    )
    _reserve(session, plan)
    earliest, latest = plan.window.dates(at)
    identity = shopper.identity
    order = Order(
        shopper_id=shopper_id,
        status="pending_payment",
        fulfillment=q.fulfillment,
        partner_id=plan.partner_id,
        tax_regime=q.tax_regime,
        coupon_id=q.coupon_id,
        identity_digest=identity.id_digest,
        declared_name=identity.real_name,
        goods_total=q.goods_total,
        discount_total=q.discount_total,
        tax_total=q.tax_total,
        total=q.total,
        created_at=at,
        delivery_earliest=earliest,
        delivery_latest=latest,
    )
    for no, line in enumerate(q.lines, start=1):
        order.lines.append(
            OrderLine(
                line_no=no,
                product_id=line.product_id,
                merchant_id=line.merchant_id,
                quantity=line.quantity,
                list_price=line.list_price,
                unit_price=line.unit_price,
                gross=line.gross,
                discount=line.discount,
                tax_rate=(line.tax / line.net).quantize(Decimal("0.0001")) if line.net else Decimal(0),
                tax=line.tax,
                total=line.total,
                commission=line.commission,
                margin=line.margin,
                allocations=[
                    LineAllocation(stock_id=source.stock_id, quantity=units)
                    for source, units in plan.lines[line.product_id]
                ],
            )
        )
    session.add(order)
    session.flush()
    session.add(
        OrderStatusChange(
            order_id=order.order_id, from_status=None, to_status="pending_payment", changed_at=at
        )
    )
    if q.coupon_id is not None:
        coupon_service.redeem(session, q.coupon_id, shopper_id, order.discount_total, order.order_id, at=at)
    session.flush()
    return order
