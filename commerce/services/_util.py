"""Small helpers shared by the services."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TypeVar

from sqlalchemy.orm import Session

from commerce.errors import NotFound, ValidationError

T = TypeVar("T")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# A cell starting with one of these runs as a formula when the CSV is opened in a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def get_or_404(session: Session, model: type[T], key, what: str) -> T:
    obj = session.get(model, key)
    if obj is None:
        raise NotFound(f"unknown {what} {key!r}", code=f"{what.replace(' ', '_')}_not_found")
    return obj


def locked_or_404(session: Session, model: type[T], key, what: str) -> T:
    """The row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    serializes writers) and re-read, so a change committed while waiting for the lock is seen."""
    obj = session.get(model, key, with_for_update=True, populate_existing=True)
    if obj is None:
        raise NotFound(f"unknown {what} {key!r}", code=f"{what.replace(' ', '_')}_not_found")
    return obj


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def country_code(value: str, field: str = "country") -> str:
    code = (value or "").strip().upper()
    if not _COUNTRY.match(code):
        raise ValidationError(
            f"{field} must be an ISO 3166 alpha-2 code, got {value!r}", code="invalid_country"
        )
    return code


def required_text(value: str | None, field: str, max_len: int) -> str:
    text = (value or "").strip()
    if not text:
        raise ValidationError(f"{field} is required", code="missing_field")
    if len(text) > max_len:
        raise ValidationError(f"{field} is longer than {max_len} characters", code="field_too_long")
    return text


def csv_cell(value):
    """`value` as a spreadsheet shows it as text: a string that would start a formula gets a leading
    single quote (OWASP, CSV injection); other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_csv(out: IO[str], fieldnames: Sequence[str], rows: Iterable[Mapping]) -> int:
    """Every CSV export: header, then the rows with each cell through `csv_cell`; returns the rows."""
    writer = csv.writer(out)
    writer.writerow(fieldnames)
    n = 0
    for row in rows:
        writer.writerow([csv_cell(row[f]) for f in fieldnames])
        n += 1
    return n
