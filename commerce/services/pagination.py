"""Offset pagination over a SELECT, with a total count for the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from commerce.errors import ValidationError

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def paginate(
    session: Session, stmt: Select[Any], *, limit: int = 50, offset: int = 0, rows: bool = False
) -> Page[Any]:
    """Run `stmt` (which needs a deterministic ORDER BY) for one page, with the total row count; items are
    the first column's values, or whole result rows with `rows=True`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_page")
    if offset < 0:
        raise ValidationError("offset must be >= 0", code="invalid_page")
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    page = stmt.limit(limit).offset(offset)
    items = list(session.execute(page).all() if rows else session.scalars(page))
    return Page(items=items, total=int(total or 0), limit=limit, offset=offset)
