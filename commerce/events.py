"""The append-only behaviour event log table and its Parquet export schema (use cases:
`commerce.services.events`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import Double, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import UTCDateTime, str_enum

EVENT_TYPES = ("view", "search", "cart", "favorite", "purchase", "coupon_grant", "coupon_redeem")

#: What clients may report. Purchases and coupon events come only from the server's own order and
#: campaign code: they drive sales rankings, commission and training data.
BehaviourEventType = Literal["view", "search", "cart", "favorite"]
BEHAVIOUR_EVENTS: tuple[str, ...] = get_args(BehaviourEventType)
#: Client-sent ids are stored as `client:{source}:{id}` and server ids may never start with this, so no
#: client can pre-post (squat) the id of a purchase, redemption or grant the server will log later.
CLIENT_ID_PREFIX = "client:"
#: Event types that are about one product (search and coupon events may have none).
PRODUCT_EVENTS = ("view", "cart", "favorite", "purchase")


EVENT_COLUMNS = (
    "event_id",
    "ts",
    "shopper_id",
    "product_id",
    "event_type",
    "quantity",
    "value",
    "session_id",
    "campaign_id",
    "coupon_id",
    "query",
)


class BehaviorEvent(Base):
    """One shopper action. Never updated or deleted; `event_id` makes re-sends no-ops.

    No foreign keys: the log must accept events as they arrive, even for entities loaded later.
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_shopper_ts", "shopper_id", "ts"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    shopper_id: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str | None] = mapped_column(String(64), default=None)
    event_type: Mapped[str] = mapped_column(str_enum("event_type", EVENT_TYPES))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[float] = mapped_column(Double, default=0.0)
    session_id: Mapped[str | None] = mapped_column(String(64), default=None)
    campaign_id: Mapped[str | None] = mapped_column(String(64), default=None)
    coupon_id: Mapped[str | None] = mapped_column(String(64), default=None)
    query: Mapped[str | None] = mapped_column(String(200), default=None)


def events_arrow_schema():
    """The contract's `events` Parquet schema (docs/data-contracts.md), shared by every writer of it."""
    import pyarrow as pa

    return pa.schema(
        [
            ("event_id", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("shopper_id", pa.string()),
            ("product_id", pa.string()),
            ("event_type", pa.string()),
            ("quantity", pa.int32()),
            ("value", pa.float64()),
            ("session_id", pa.string()),
            ("campaign_id", pa.string()),
            ("coupon_id", pa.string()),
            ("query", pa.string()),
        ]
    )
