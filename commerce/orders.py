"""Orders, their lines, status history and the per-person annual spend counter (ORM)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.catalog import FULFILLMENT_MODES
from commerce.db import Base
from commerce.sqltypes import Money, Rate, UTCDateTime, str_enum, utcnow
from commerce.tax import ANNUAL_LIMIT, CROSS_BORDER, GENERAL_TRADE

OrderStatus = Literal[
    "pending_payment",
    "paid",
    "customs_cleared",
    "shipped",
    "delivered",
    "completed",
    "cancelled",
    "refunded",
]
ORDER_STATUSES: tuple[str, ...] = get_args(OrderStatus)
#: Statuses whose goods value counts toward the annual limit and toward revenue.
COUNTED_STATUSES = ("paid", "customs_cleared", "shipped", "delivered", "completed")


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("round(total - (goods_total - discount_total + tax_total), 2) = 0", name="total_sum"),
        # The expiry sweep's lookup: unpaid orders older than the payment window.
        Index("ix_orders_status_created_at", "status", "created_at"),
    )

    order_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shopper_id: Mapped[str] = mapped_column(ForeignKey("shoppers.shopper_id"), index=True)
    status: Mapped[str] = mapped_column(str_enum("order_status", ORDER_STATUSES), default="pending_payment")
    fulfillment: Mapped[str] = mapped_column(str_enum("order_fulfillment", FULFILLMENT_MODES))
    partner_id: Mapped[str] = mapped_column(ForeignKey("logistics_partners.partner_id"))
    tax_regime: Mapped[str] = mapped_column(str_enum("tax_regime", (CROSS_BORDER, GENERAL_TRADE)))
    coupon_id: Mapped[str | None] = mapped_column(ForeignKey("coupons.coupon_id"), default=None)
    #: Customs declaration: who buys (digest of the ID number, the name as declared).
    identity_digest: Mapped[str] = mapped_column(String(64), index=True)
    declared_name: Mapped[str] = mapped_column(String(100))
    goods_total: Mapped[Decimal] = mapped_column(Money)
    discount_total: Mapped[Decimal] = mapped_column(Money)
    tax_total: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    payment_ref: Mapped[str | None] = mapped_column(String(100), default=None)
    #: Set on orders rebuilt from past purchase events (commerce.history): the first purchase's event_id.
    #: Unique, so re-importing the same history adds nothing.
    import_ref: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, default=None)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    delivery_earliest: Mapped[datetime] = mapped_column(UTCDateTime)
    delivery_latest: Mapped[datetime] = mapped_column(UTCDateTime)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.line_no", cascade="all, delete-orphan"
    )
    history: Mapped[list[OrderStatusChange]] = relationship(order_by="OrderStatusChange.id")

    @property
    def goods_value(self) -> Decimal:
        """Dutiable value: goods after discounts, what the customs limits are measured on."""
        return self.goods_total - self.discount_total

    def __repr__(self) -> str:
        return f"Order({self.order_id}, status={self.status!r}, total={self.total})"


class OrderLine(Base):
    """One product in an order with its own tax, so the order total is exactly the sum of its lines."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "line_no"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("round(total - (gross - discount + tax), 2) = 0", name="total_sum"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.order_id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    list_price: Mapped[Decimal] = mapped_column(Money)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    gross: Mapped[Decimal] = mapped_column(Money)
    discount: Mapped[Decimal] = mapped_column(Money)
    tax_rate: Mapped[Decimal] = mapped_column(Rate)
    tax: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    #: Platform revenue from this line: commission (marketplace) or margin (self-operated).
    commission: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    margin: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))

    order: Mapped[Order] = relationship(back_populates="lines")
    #: Where the units come from: one row per warehouse stock row (a line may be split across warehouses).
    allocations: Mapped[list[LineAllocation]] = relationship(
        order_by="LineAllocation.stock_id", cascade="all, delete-orphan"
    )

    @property
    def net(self) -> Decimal:
        return self.gross - self.discount


class LineAllocation(Base):
    """Units of an order line reserved in (then taken from) one warehouse's stock row.

    Reservation, payment, release and restocking move exactly these units on exactly this row, once per
    row: a split line touches each of its warehouses once.
    """

    __tablename__ = "order_line_allocations"
    __table_args__ = (
        UniqueConstraint("order_line_id", "stock_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    stock_id: Mapped[int] = mapped_column(ForeignKey("stock.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)


class OrderStatusChange(Base):
    """Append-only history of an order's transitions, for tracing an order end to end."""

    __tablename__ = "order_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.order_id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnnualSpend(Base):
    """Goods value a person (identity digest) has paid for in a calendar year.

    Updated with a conditional UPDATE so concurrent payments can never push it past the limit; the CHECK
    constraint backs that up.
    """

    __tablename__ = "annual_spend"
    __table_args__ = (CheckConstraint(f"amount >= 0 AND amount <= {ANNUAL_LIMIT}", name="amount_range"),)

    identity_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
