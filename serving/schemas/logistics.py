"""Logistics shapes: partners, stock locations, delivery quotes per partner, merchants' shipping rules,
replenishment."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field, model_validator

from serving.schemas.base import RequestModel


class PartnerOut(BaseModel):
    partner_id: str
    name: str
    mode: str = Field(description="bonded | direct_mail")
    min_days: int
    max_days: int


class LocationOwnerIn(RequestModel):
    merchant_id: str | None = Field(
        min_length=1, max_length=64, description="The merchant whose own location it becomes; null: anyone's"
    )


class LocationOut(BaseModel):
    location: str
    name: str
    mode: str = Field(description="bonded | direct_mail")
    partner_id: str | None = Field(description="The logistics partner running it; null: a merchant's own")
    region: str | None
    country: str | None
    owner_merchant_id: str | None = Field(
        description="Only this merchant may stock or see it; null: any merchant may (a platform location)"
    )


class DeliveryOptionOut(BaseModel):
    partner_id: str
    name: str
    service_level: str
    cost: Decimal
    days_low: float = Field(description="10% quantile of days from order to delivery")
    days_median: float
    promise_days: float = Field(description="80% quantile: arrives within this many days 4 times in 5")
    days_high: float = Field(description="90% quantile; [days_low, days_high] is the 80% window")
    earliest: datetime
    latest: datetime


class DeliveryQuoteOut(BaseModel):
    product_id: str
    region: str
    zone: str
    chargeable_weight_g: int
    rule: str = Field(description="fastest | within:N (merchant's promise) | partner:ID (merchant's choice)")
    chosen: str
    in_stock: bool = Field(description="false: no warehouse holds the units; windows from the usual origin")
    promised_window: tuple[datetime, datetime]
    model: str | None = Field(description="delivery model that predicted the windows; null: partners' ranges")
    options: list[DeliveryOptionOut]


class ShippingRuleIn(RequestModel):
    partner_id: str | None = Field(default=None, min_length=1, max_length=64)
    max_days: int | None = Field(default=None, ge=1, le=60)

    @model_validator(mode="after")
    def one_of(self) -> ShippingRuleIn:
        if (self.partner_id is None) == (self.max_days is None):
            raise ValueError("give either partner_id or max_days")
        return self


class ShippingRuleOut(BaseModel):
    merchant_id: str
    partner_id: str | None
    max_days: int | None
    updated_at: datetime


class ReplenishmentOut(BaseModel):
    product_id: str
    location: str
    forecast: list[float] = Field(description="expected units per week, next weeks first")
    lead_time_demand: float
    safety_stock: float
    reorder_point: float
    order_up_to: float
    available: float
    reorder: bool
    reorder_qty: int
