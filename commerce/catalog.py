"""Category tree, products and stock per fulfillment location (ORM)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.db import Base
from commerce.sqltypes import Money, Rate, UTCDateTime, skeleton_of, str_enum, utcnow

Fulfillment = Literal["bonded", "direct_mail"]  # bonded import (customs 1210), direct mail (9610)
FULFILLMENT_MODES: tuple[str, ...] = get_args(Fulfillment)
LISTING_STATUSES = ("listed", "delisted")
#: General-trade tariff when a category does not say: 10% is a mid value of China's MFN consumer-goods
#: tariffs; 0 would understate the tax on a single item above the cross-border limit.
DEFAULT_TARIFF_RATE = Decimal("0.10")
DEFAULT_VAT_RATE = Decimal("0.13")


class Category(Base):
    """A node of the category tree; tax and commission rates live on the (leaf) category of a product."""

    __tablename__ = "categories"
    __table_args__ = (
        CheckConstraint("vat_rate >= 0 AND vat_rate < 1", name="vat_rate_range"),
        CheckConstraint("consumption_tax_rate >= 0 AND consumption_tax_rate < 1", name="ct_rate_range"),
        CheckConstraint("tariff_rate >= 0 AND tariff_rate < 1", name="tariff_rate_range"),
        CheckConstraint("commission_rate >= 0 AND commission_rate < 1", name="commission_rate_range"),
    )

    category_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category_id_skeleton: Mapped[str] = skeleton_of("category_id")
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("categories.category_id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    vat_rate: Mapped[Decimal] = mapped_column(Rate, default=DEFAULT_VAT_RATE)
    consumption_tax_rate: Mapped[Decimal] = mapped_column(Rate, default=Decimal("0"))
    tariff_rate: Mapped[Decimal] = mapped_column(Rate, default=DEFAULT_TARIFF_RATE)
    commission_rate: Mapped[Decimal] = mapped_column(Rate, default=Decimal("0.05"))
    repurchasable: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"Category({self.category_id!r}, parent={self.parent_id!r})"


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("cost_price IS NULL OR cost_price >= 0", name="cost_nonnegative"),
        CheckConstraint("NOT self_operated OR cost_price IS NOT NULL", name="self_operated_cost"),
        #: A SKU is the merchant's own code: unique among its products, not the marketplace's (0046).
        UniqueConstraint("merchant_id", "sku"),
    )

    product_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id_skeleton: Mapped[str] = skeleton_of("product_id")
    sku: Mapped[str] = mapped_column(String(64))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.merchant_id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    category_id: Mapped[str] = mapped_column(ForeignKey("categories.category_id"), index=True)
    brand: Mapped[str] = mapped_column(String(120))
    origin_country: Mapped[str] = mapped_column(String(2))
    price: Mapped[Decimal] = mapped_column(Money)
    #: Purchase cost, required for self-operated goods: the platform's margin is price minus cost.
    cost_price: Mapped[Decimal | None] = mapped_column(Money, default=None)
    fulfillment: Mapped[str] = mapped_column(str_enum("fulfillment_mode", FULFILLMENT_MODES))
    #: Shipping weight and packed volume: carriers charge the larger of actual and volumetric weight.
    weight_g: Mapped[int] = mapped_column(Integer, default=500, server_default="500")
    volume_cm3: Mapped[int | None] = mapped_column(Integer, default=None)
    self_operated: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(str_enum("listing_status", LISTING_STATUSES), default="listed")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    category: Mapped[Category] = relationship(lazy="joined")
    stock: Mapped[list[Stock]] = relationship(back_populates="product", order_by="Stock.id")

    def __repr__(self) -> str:
        return f"Product({self.product_id!r}, sku={self.sku!r}, price={self.price})"


class Stock(Base):
    """Units of one product in one warehouse. `reserved` units belong to unpaid orders.

    The CHECK constraints are the last line of defence against overselling; checkout never relies on them.
    """

    __tablename__ = "stock"
    __table_args__ = (
        UniqueConstraint("product_id", "location"),
        CheckConstraint("quantity >= 0", name="quantity_nonnegative"),
        CheckConstraint("reserved >= 0 AND reserved <= quantity", name="reserved_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"), index=True)
    #: The warehouse holding the units (commerce.logistics.Warehouse); the API calls it the location.
    location: Mapped[str] = mapped_column(ForeignKey("warehouses.warehouse_id"))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(back_populates="stock")

    @property
    def available(self) -> int:
        return self.quantity - self.reserved
