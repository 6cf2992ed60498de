"""Small helpers shared by the services."""

from __future__ import annotations

import csv
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TypeVar

from sqlalchemy.orm import Session

from commerce.errors import NotFound, ValidationError

T = TypeVar("T")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# A cell starting with one of these runs as a formula when the CSV is opened in a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Characters that show as nothing or reorder the text after them (zero-width, bidi controls, BOM, soft
# hyphen, Arabic letter mark, Mongolian vowel separator, grapheme joiner, Hangul fillers, tag characters):
# names and licence numbers with them looked like other ones in the console, the API and exports.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\u3164\ufeff"
    "\uffa0\U000e0000-\U000e007f]"
)


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


def visible_text(text: str, field: str) -> str:
    """`text`, refused (422) if it holds an invisible or direction-changing character."""
    if _INVISIBLE.search(text):
        raise ValidationError(
            f"{field} holds an invisible or direction-changing character", code="invisible_character"
        )
    return text


def required_text(value: str | None, field: str, max_len: int) -> str:
    text = visible_text((value or "").strip(), field)
    if not text:
        raise ValidationError(f"{field} is required", code="missing_field")
    if len(text) > max_len:
        raise ValidationError(f"{field} is longer than {max_len} characters", code="field_too_long")
    return text


def licence_number(value: str | None) -> str:
    """A business licence number in the one form uniqueness is checked on: NFKC (full-width letters and
    digits become ASCII), upper case, any dash as `-`, runs of spaces as one. `LIC-7`, `lic-7`,
    `ＬＩＣ-7` and `LIC‑7` (a non-breaking hyphen) were four registrations of one licence."""
    text = unicodedata.normalize("NFKC", value or "").upper()
    text = "".join("-" if unicodedata.category(c) == "Pd" else c for c in text)
    return required_text(" ".join(text.split()), "licence_no", 64)


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
