"""Merchant and product shapes. Money is Decimal (a JSON string), never float."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from commerce.catalog import Fulfillment
from commerce.services.catalog import MAX_STOCK_UNITS
from serving.schemas.base import RequestModel

CountryCode = Annotated[str, Field(min_length=2, max_length=2, pattern="^[A-Za-z]{2}$")]
PositiveMoney = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
Location = Annotated[str, Field(min_length=1, max_length=64)]
Units = Annotated[int, Field(ge=0, le=MAX_STOCK_UNITS)]


class MerchantApply(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    country: CountryCode
    licence_no: str = Field(min_length=1, max_length=64, description="Business licence number.")
    brands: list[str] = Field(min_length=1, max_length=100, description="Brand authorizations held.")


class MerchantOut(BaseModel):
    merchant_id: str
    name: str
    country: str
    licence_no: str
    status: Literal["pending", "approved", "rejected", "suspended"]
    status_reason: str | None
    brands: list[str]
    created_at: datetime
    reviewed_at: datetime | None


class MerchantReview(RequestModel):
    decision: Literal["approve", "reject", "suspend", "reinstate"]
    reason: str | None = Field(default=None, max_length=1000, description="Required to reject or suspend.")


class CategoryOut(BaseModel):
    category_id: str
    parent_id: str | None
    name: str
    vat_rate: Decimal
    consumption_tax_rate: Decimal
    repurchasable: bool


class CommissionSet(RequestModel):
    commission_rate: Decimal = Field(
        ge=0, lt=1, max_digits=5, decimal_places=4,
        description="Fraction of each marketplace line's net price the platform keeps (0.05 = 5%); "
        "applies to orders placed after the change.",
    )  # fmt: skip


class CommissionOut(BaseModel):
    category_id: str
    commission_rate: Decimal
    previous_rate: Decimal
    changed_at: datetime


class ProductCreate(RequestModel):
    sku: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=300)
    category_id: str = Field(min_length=1, max_length=64)
    brand: str = Field(min_length=1, max_length=120)
    origin_country: CountryCode
    price: PositiveMoney
    fulfillment: Fulfillment
    self_operated: bool = False
    cost_price: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    stock: dict[Location, Units] = Field(default_factory=dict, max_length=50, description="location -> units")


class ProductUpdate(RequestModel):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    price: PositiveMoney | None = None
    status: Literal["listed", "delisted"] | None = None


class StockSet(RequestModel):
    quantity: Units


class StockOut(BaseModel):
    location: str
    quantity: int
    reserved: int


class PromisedDeliveryOut(BaseModel):
    """What the storefront promises for one unit to a region: the window checkout would store."""

    region: str
    partner_id: str
    promised_window: tuple[datetime, datetime] = Field(description="10%-90% of predicted delivery times")
    arrives_by: datetime = Field(description="80% quantile: arrives by then 4 times in 5")
    model: str | None = Field(description="delivery model that predicted it; null: partners' day ranges")


class ProductOut(BaseModel):
    product_id: str
    sku: str
    merchant_id: str
    title: str
    category_id: str
    brand: str
    origin_country: str
    price: Decimal
    fulfillment: Fulfillment
    self_operated: bool
    status: Literal["listed", "delisted"]
    in_stock: bool = Field(description="Units available to order at some location.")
    stock: list[StockOut] | None = Field(
        description="Units and reservations per location: for the product's merchant and admins only."
    )
    delivery: PromisedDeliveryOut | None = Field(
        default=None, description="With ?region= and in stock: the promised delivery window."
    )
    created_at: datetime
