"""The API key table: who may call the API, in which role, on whose behalf, and the console sessions
signed in with a key (use cases: `commerce.services.access`).

A key is bound to a shopper (role `shopper`) or a merchant (role `merchant`), which is what
object-level checks compare against. Only the key's SHA-256 is stored, and only a console session id's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
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

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id}, hint={self.hint!r}, role={self.role!r})"


class ConsoleSession(Base):
    """One browser's console sign-in. The cookie carries the session id; the row is what makes it valid,
    on every replica: signing out deletes this browser's row only, ending a key's sessions deletes all of
    its rows, and expired rows are deleted as new sessions start."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's id
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
