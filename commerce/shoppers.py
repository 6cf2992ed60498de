"""Shoppers and their customs identity (ORM). The resident ID number itself is never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.db import Base
from commerce.sqltypes import UTCDateTime, skeleton_of, utcnow


class Shopper(Base):
    __tablename__ = "shoppers"

    shopper_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shopper_id_skeleton: Mapped[str] = skeleton_of("shopper_id")
    region: Mapped[str] = mapped_column(String(64))
    segment: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    identity: Mapped[ShopperIdentity | None] = relationship(back_populates="shopper", uselist=False)

    def __repr__(self) -> str:
        return f"Shopper({self.shopper_id!r}, region={self.region!r})"


class ShopperIdentity(Base):
    """Real name plus HMAC-SHA256 and last four characters of the resident ID number.

    The digest identifies the person across accounts: the annual limit is per person, not per account.
    `key_version` is the version of the identity key that made the digest (commerce.identity.Keyring).
    """

    __tablename__ = "shopper_identities"

    shopper_id: Mapped[str] = mapped_column(ForeignKey("shoppers.shopper_id"), primary_key=True)
    real_name: Mapped[str] = mapped_column(String(100))
    id_digest: Mapped[str] = mapped_column(String(64), index=True)
    id_last4: Mapped[str] = mapped_column(String(4))
    key_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    shopper: Mapped[Shopper] = relationship(back_populates="identity")

    @property
    def masked_name(self) -> str:
        return self.real_name[:1] + "*" * max(len(self.real_name) - 1, 1)

    def __repr__(self) -> str:
        return f"ShopperIdentity({self.shopper_id!r}, id=****{self.id_last4})"
