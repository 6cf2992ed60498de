"""The API key table: who may call the API, in which role, on whose behalf (use cases:
`commerce.services.access`).

A key is bound to a shopper (role `shopper`) or a merchant (role `merchant`), which is what
object-level checks compare against. Only the key's SHA-256 is stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import UTCDateTime

ROLES = ("storefront", "shopper", "merchant", "marketer", "data_scientist", "admin")


KEY_PREFIX = "cc_"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    hint: Mapped[str] = mapped_column(String(12))  # first characters, to recognise a key in listings
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    shopper_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    merchant_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: Console sessions carry the value they were signed in under; signing out increments it, so a copied
    #: session cookie stops working on every replica (the row is read on every console request anyway).
    console_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id}, hint={self.hint!r}, role={self.role!r})"
