"""The base of every request body: unknown fields are refused (422), never silently dropped; and the plain
types of every number and time a query or path parameter carries.

Mass assignment starts with a field the server did not expect; refusing unknown fields makes such attempts
visible, and what a known field may be set by is decided by serving.field_access.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from types import UnionType
from typing import Annotated, Generic, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic.fields import FieldInfo

from commerce.sqltypes import NUMBER

T = TypeVar("T")


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise ValueError("time out of range in UTC") from None


#: How a query or path parameter writes a number or a time: one spelling each, in ASCII, so what a proxy's
#: log, a cache key or a reviewer reads is what the server read. Pydantic and FastAPI took `1_0`, `+5`,
#: ` 5`, `05` and `5.0` for an integer, `9e-1` and `.9` for a decimal, a unix timestamp for a time. The
#: plain subset of `commerce.sqltypes.NUMBER` (a body's numbers): no sign but `-`, no leading zero, no
#: exponent.
INTEGER_TEXT = re.compile(r"0|-?[1-9][0-9]*", re.ASCII)
DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)
DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
#: RFC 3339: a day, `T`, hours and minutes (seconds and up to 6 decimals optional), `Z` or an offset.
INSTANT_TEXT = re.compile(
    DAY_TEXT.pattern + r"T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def _plain(pattern: re.Pattern, example: str) -> BeforeValidator:
    """A check that a parameter's text is written as `pattern` says, before pydantic reads it."""

    def check(value):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"write it as plain ASCII text like {example}, not {str(value)[:40]!r}")
        return value

    return BeforeValidator(check)


#: The checks of every number and time a query or path parameter carries, written last in its
#: `Annotated` (`Annotated[int, Query(ge=1, le=100), PLAIN_INT]`): before the bounds, pydantic cannot put
#: them in the integer's schema and the OpenAPI document says `ge` where it means `minimum`.
#: tests/serving/test_strict_params.py checks every route's parameters.
PLAIN_INT = _plain(INTEGER_TEXT, "12 or -3")
PLAIN_FLOAT = _plain(DECIMAL_TEXT, "0.95 or 12")
PLAIN_INSTANT = _plain(INSTANT_TEXT, "2026-06-01T08:00:00Z or 2026-06-01T16:00+08:00")


def _written_instant(value):
    """A time a body gives as text is written as RFC 3339 (`INSTANT_TEXT`); a `datetime` from Python
    callers (the console's forms) passes. Pydantic also read `1780000000`, `"1780000000"` and
    `"2026-06-01 08:00Z"`."""
    if isinstance(value, datetime) or (isinstance(value, str) and INSTANT_TEXT.fullmatch(value)):
        return value
    raise ValueError(f"write the time as RFC 3339 text like 2026-06-01T08:00:00Z, not {str(value)[:40]!r}")


#: Every time a request carries: written as RFC 3339 text, with its offset, and one that UTC can hold.
#: `9999-12-31T23:59-14:00` passed `AwareDatetime` and overflowed where it was stored or compared (a
#: 500); a naive one was compared with the server's aware clock (a 500 too).
Instant = Annotated[AwareDatetime, BeforeValidator(_written_instant), AfterValidator(_in_utc)]


def plain_day(text: str) -> date:
    """A calendar day written `YYYY-MM-DD` (ValueError otherwise): `date.fromisoformat` also reads
    `20260601` and `2026-W22-1`."""
    if not DAY_TEXT.fullmatch(text):
        raise ValueError(f"write the day as YYYY-MM-DD, not {text[:40]!r}")
    return date.fromisoformat(text)


def _numeric(annotation) -> bool:
    """Whether a field of type `annotation` holds a number somewhere (`Decimal`, `int | None`,
    `dict[str, Units]`, `list[Decimal]`, ...); `bool` and `Any` do not count."""
    if annotation in (int, float, Decimal):
        return True
    return any(_numeric(arg) for arg in get_args(annotation) if not isinstance(arg, FieldInfo))


@cache
def _numeric_fields(model: type[BaseModel]) -> tuple[tuple[str, object], ...]:
    """(name, annotation) of `model`'s fields that hold numbers: computed once per model."""
    return tuple((name, f.annotation) for name, f in model.model_fields.items() if _numeric(f.annotation))


def _ascii_numbers(annotation, value, field: str) -> None:
    """Refuse a number in `value` written as text other than `NUMBER` allows, or as a JSON `true`/`false`
    (pydantic's int and float read them as 1 and 0, its Decimal refuses them), where `annotation` (a
    field's type) expects one."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        _ascii_numbers(args[0], value, field)
    elif origin in (Union, UnionType):
        kinds = [kind for kind in args if kind is not type(None)]
        if len(kinds) == 1:  # `X | None`; a union of several kinds is left to pydantic
            _ascii_numbers(kinds[0], value, field)
    elif isinstance(value, bool):
        if annotation in (int, float, Decimal):
            raise ValueError(f"{field}: a number, not {str(value).lower()}")
    elif isinstance(value, str):
        if annotation in (int, float, Decimal) and not NUMBER.fullmatch(value):
            raise ValueError(f"{field}: write the number in ASCII digits (e.g. 12.50), not {value[:40]!r}")
    elif origin in (list, tuple, set, frozenset) and isinstance(value, list) and args:
        for item in value:
            _ascii_numbers(args[0], item, field)
    elif origin is dict and isinstance(value, dict) and len(args) == 2:
        for item in value.values():
            _ascii_numbers(args[1], item, field)


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _numbers_in_ascii(cls, data):
        """Every number a body gives as text is written in ASCII digits (`commerce.sqltypes.NUMBER`):
        pydantic's Decimal read `"١٢"` as 12 and its int `"1_0"` as 10. One check per object, over its
        number fields only: a validator per field made a 1,000-event batch 6 times slower to validate."""
        if isinstance(data, dict):
            for name, annotation in _numeric_fields(cls):
                if name in data:
                    _ascii_numbers(annotation, data[name], name)
        return data


class PageOut(BaseModel, Generic[T]):
    """Every list in the API: one page of `items` (limit/offset) and the `total` matching the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int
