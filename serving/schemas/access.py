"""API key management shapes. The plaintext key appears once, in the creation response."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from commerce.access import ROLES
from serving.schemas.base import RequestModel

Role = Literal[ROLES]  # the roles are defined once, in commerce.access


class ApiKeyCreate(RequestModel):
    role: Role
    name: str = Field(default="", max_length=200)
    shopper_id: str | None = Field(default=None, min_length=1, max_length=64)
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64)


class ApiKeyOut(BaseModel):
    id: int
    hint: str
    name: str
    role: Role
    shopper_id: str | None
    merchant_id: str | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret; store it now, it cannot be shown again.")


class ConsoleSessionsEnded(BaseModel):
    key_id: int
    ended: int = Field(description="Console sessions of the key signed out (their cookies are refused).")
