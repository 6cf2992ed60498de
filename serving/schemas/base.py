"""The base of every request body: unknown fields are refused (422), never silently dropped.

Mass assignment starts with a field the server did not expect; refusing unknown fields makes such attempts
visible, and what a known field may be set by is decided by serving.field_access.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict

T = TypeVar("T")


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise ValueError("time out of range in UTC") from None


#: Every time a request carries: with its offset, and one that UTC can hold. `9999-12-31T23:59-14:00`
#: passed `AwareDatetime` and overflowed where it was stored or compared (a 500); a naive one was
#: compared with the server's aware clock (a 500 too).
Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel, Generic[T]):
    """Every list in the API: one page of `items` (limit/offset) and the `total` matching the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int
