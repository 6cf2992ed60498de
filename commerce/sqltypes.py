"""Column types and value helpers shared by the ORM modules, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import icu
from sqlalchemy import DateTime, Enum, Numeric, Text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, MappedColumn, mapped_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from commerce.errors import ValidationError

FEN = Decimal("0.01")

#: Money columns: CNY with two decimals (fen). SQLite keeps NUMERIC as a binary float, so SQL that adds
#: money wraps the sum in round(..., 2) to compare and store exact fen on both backends.
Money = Numeric(12, 2, asdecimal=True)
MONEY_DIGITS = 10  # Money's digits before the point: amounts from 10**10 up fit no Money column
#: Rates and fractions such as VAT 0.1300.
Rate = Numeric(6, 4, asdecimal=True)
RATE_DIGITS = 2  # Rate's digits before the point
RATE_PLACES = Decimal("0.0001")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite drops the zone; we put it back).

    Naive inputs are taken to be UTC already, which is what every caller in this package passes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite stores text; keep it naive so lexical order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class utc_day(FunctionElement):  # noqa: N801  (an SQL function, named as SQLAlchemy's are)
    """The UTC day of a `UTCDateTime` column, in SQL (to group by; the text `YYYY-MM-DD` on SQLite, a
    date on PostgreSQL): SQLite stores the naive UTC time as text, PostgreSQL a `timestamptz` whose day
    depends on the session's time zone unless asked in UTC."""

    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element, compiler, **kw) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element, compiler, **kw) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC' AS DATE)"


def str_enum(name: str, values: tuple[str, ...]) -> Enum:
    """A VARCHAR with a CHECK constraint (no native PostgreSQL enum), so both backends match exactly."""
    return Enum(
        *values, name=name, native_enum=False, create_constraint=True, validate_strings=True, length=32
    )


# An id a client chooses (coupon, merchant, product, campaign) is a cell in exported CSV: it starts with a
# letter, digit or `_`, so it never reads as a spreadsheet formula (`=`, `+`, `-`, `@`, tab, CR), and holds
# no control character. It is one URL path segment: no `/` (decoded from `%2F` before routing, such an id
# was out of reach of every API and console URL, so nobody could edit or retire it). It holds no invisible
# or direction-changing character (zero width, bidi overrides, BOM): `c-10off` and `c-10off\u200b` looked
# the same in the console and exports. Other characters stay allowed (ids such as `c-10off?x` exist; the
# console percent-encodes ids in URLs). Checked on the id's normal form (`commerce.services._util.chosen_id`).
CHOSEN_ID_PATTERN = r"^\w[^\x00-\x1f\x7f/\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]{0,63}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: The calendar's first and last instants, in UTC: no time column holds one before or after.
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def shifted(at: datetime, delta: timedelta) -> datetime:
    """`at + delta`, stopped at the calendar's first or last instant: the bound of a window around a time
    a request chose (a report ending 9999-12-31, a campaign starting 0001-01-01), where `+` overflowed."""
    try:
        return at + delta
    except OverflowError:
        return LAST_INSTANT if delta > timedelta(0) else FIRST_INSTANT


#: A number written as text (a JSON string, a form field, an argument): ASCII digits with an optional sign,
#: point and exponent. Python's Decimal also reads any Unicode digit (`١٢`, `１２`), and it and pydantic's
#: int `_` digit groups and surrounding spaces, so `"١٢"` was a price of 12.00 and `"1_000"` one of
#: 1,000.00: a number a reviewer, a log search or another system reads otherwise, or not at all.
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _decimal(value: Decimal | int | str, field: str, code: str) -> Decimal:
    """A finite Decimal from `value` (a string written as `NUMBER` says); floats are refused: they cannot
    hold decimals exactly."""
    if isinstance(value, float):
        raise ValidationError(f"{field} must be a Decimal or string, not float", code=code)
    if isinstance(value, str) and not NUMBER.fullmatch(value):
        raise ValidationError(f"{field} must be in ASCII digits, not {value[:40]!r}", code=code)
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValidationError(f"{field} is not a number: {value!r}", code=code) from None
    if not number.is_finite():
        raise ValidationError(f"{field} must be finite", code=code)
    return number


def to_money(value: Decimal | int | str, *, field: str = "amount") -> Decimal:
    """Parse an amount as Decimal CNY rounded to the fen (a negative zero is 0.00)."""
    amount = _decimal(value, field, "invalid_money")
    if amount.adjusted() < MONEY_DIGITS:  # quantizing `1e999999999` raised (a 500)
        amount = amount.quantize(FEN, rounding=ROUND_HALF_UP)
    if amount.adjusted() >= MONEY_DIGITS:  # no Money column holds it
        raise ValidationError(f"{field} must be below {10**MONEY_DIGITS:,}", code="invalid_money")
    return amount.copy_abs() if amount.is_zero() else amount  # "-0" was kept and shown as -0.00


def to_rate(value: Decimal | int | str, *, field: str, code: str = "invalid_rate") -> Decimal:
    """Parse a rate or share (a `Rate` column: four decimals) as `to_money` parses amounts; a negative zero
    is 0.0000, and 100 or more (no Rate column holds it) is refused. The caller checks its own range."""
    rate = _decimal(value, field, code)
    if rate.adjusted() >= RATE_DIGITS:
        raise ValidationError(f"{field} must be below {10**RATE_DIGITS}", code=code)
    rate = rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP)
    return rate.copy_abs() if rate.is_zero() else rate


def round_fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


_SPOOF = icu.SpoofChecker()  # read-only after construction: ICU allows concurrent use from threads
#: The column beside a name that holds its `skeleton`: `coupon_id_skeleton` for `coupon_id`.
SKELETON = "_skeleton"


def skeleton(text: str) -> str:
    """Unicode's skeleton of `text` (UTS #39, ICU's data): two strings look alike exactly when their
    skeletons are equal. Cyrillic `РАУ` and Latin `PAY` share `PAY`; `rn` and `m` share one too."""
    return _SPOOF.getSkeleton(0, text)


def skeleton_of(source: str) -> MappedColumn:
    """The column `<source>_skeleton`: `skeleton` of column `source`, indexed, so a look-alike is one
    lookup (`commerce.services._util.unlike_stored`) rather than a skeleton of every stored name per
    write. Set by every INSERT, ORM or Core, one row or many (a column default reading the row's
    `source`); a rename writes both (`renamed`)."""

    def of_row(context: DefaultExecutionContext) -> str:
        return skeleton(context.get_current_parameters()[source])

    return mapped_column(Text, index=True, default=of_row)


def renamed(column: InstrumentedAttribute[str], value: str) -> dict[str, str]:
    """The values that rename a row's `column` (one with a `skeleton_of` beside it) to `value`."""
    return {column.key: value, column.key + SKELETON: skeleton(value)}
