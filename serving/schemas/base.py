"""The base of every request body: unknown fields are refused (422), never silently dropped.

Mass assignment starts with a field the server did not expect; refusing unknown fields makes such attempts
visible, and what a known field may be set by is decided by serving.field_access.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel, Generic[T]):
    """Every list in the API: one page of `items` (limit/offset) and the `total` matching the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int
