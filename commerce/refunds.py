"""Refund requests: how a paid order is given back. The shopper asks, the back office completes or rejects.

A paid order is never simply cancelled by its buyer: money has moved, so undoing the sale leaves a record
of who asked, why, and who decided. One request per order (a unique order_id), so concurrent requests for
the same order cannot both be opened.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import UTCDateTime, str_enum

REFUND_STATUSES = ("requested", "completed", "rejected")


class RefundRequest(Base):
    __tablename__ = "refund_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.order_id"), unique=True)
    shopper_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(str_enum("refund_status", REFUND_STATUSES), default="requested")
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
