"""Behaviour events as the storefront sends them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

MAX_BATCH = 1000


class EventIn(BaseModel):
    event_id: str = Field(min_length=1, max_length=64, description="Client-chosen; re-sending it is a no-op.")
    ts: AwareDatetime
    shopper_id: str = Field(min_length=1, max_length=64)
    event_type: Literal["view", "search", "cart", "favorite", "purchase", "coupon_grant", "coupon_redeem"]
    product_id: str | None = Field(default=None, max_length=64, description="Required except for search.")
    quantity: int = Field(default=1, ge=1, le=10_000)
    value: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    session_id: str | None = Field(default=None, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=64)
    coupon_id: str | None = Field(default=None, max_length=64)
    query: str | None = Field(default=None, max_length=200)


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventsAccepted(BaseModel):
    received: int
    inserted: int = Field(description="New events; the rest were already stored (same event_id).")
    duplicates: int
    received_at: datetime
    session_events: int = Field(default=0, description="Events added to live sessions (valid session_id).")
