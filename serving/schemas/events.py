"""Behaviour events as the storefront sends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field, field_validator

from commerce.events import BehaviourEventType
from commerce.services.checkout import MAX_UNITS_PER_PRODUCT
from serving.schemas.base import Instant, RequestModel

MAX_BATCH = 1000
#: How far ahead of the server's clock an event may be stamped: device clocks drift, but an event from
#: the future would count in every ranking window until that date.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class EventIn(RequestModel):
    event_id: str = Field(
        min_length=1,
        max_length=64,
        description="Client-chosen; re-sending it with the same key is a no-op. Stored in the key's own "
        "namespace, so it never clashes with another sender's ids or the server's.",
    )
    ts: Instant
    shopper_id: str = Field(min_length=1, max_length=64)
    event_type: BehaviourEventType = Field(
        description="Behaviour only: purchases and coupon events are logged by the server itself."
    )
    product_id: str | None = Field(default=None, max_length=64, description="Required except for search.")
    quantity: int = Field(
        default=1, ge=1, le=MAX_UNITS_PER_PRODUCT, description="At most what one order holds of a product."
    )
    value: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    session_id: str | None = Field(default=None, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=64)
    coupon_id: str | None = Field(default=None, max_length=64)
    query: str | None = Field(default=None, max_length=200)

    @field_validator("ts")
    @classmethod
    def _not_in_the_future(cls, ts: datetime) -> datetime:
        if ts > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError(f"ts is in the future (more than {MAX_CLOCK_SKEW} ahead of the server clock)")
        return ts


class EventBatch(RequestModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventsAccepted(BaseModel):
    received: int
    inserted: int = Field(description="New events; the rest were already stored (same event_id).")
    duplicates: int
    received_at: datetime
    session_events: int = Field(default=0, description="Events added to live sessions (valid session_id).")
