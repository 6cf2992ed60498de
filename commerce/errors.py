"""Domain errors. Each carries a stable machine-readable `code`; the API maps the classes to HTTP statuses.

Messages are safe to show to a caller: they never contain secrets such as resident ID numbers.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation the domain reports (HTTP 400 unless a subclass says otherwise)."""

    code = "domain_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ValidationError(DomainError):
    """Input is malformed or breaks a rule independent of current state (HTTP 422)."""

    code = "validation_error"


class Forbidden(DomainError):
    """The caller may not use an entity that exists, e.g. another merchant's own location (HTTP 403)."""

    code = "forbidden"


class NotFound(DomainError):
    """A referenced entity does not exist (HTTP 404)."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with current state, e.g. a duplicate key (HTTP 409)."""

    code = "conflict"


class InvalidState(Conflict):
    """An illegal state transition, e.g. shipping an unpaid order (HTTP 409)."""

    code = "invalid_state"


class OutOfStock(Conflict):
    """Not enough unreserved stock at any location (HTTP 409)."""

    code = "out_of_stock"


class LimitExceeded(DomainError):
    """A quantitative limit would be broken: customs limits, coupon usage or budget (HTTP 422)."""

    code = "limit_exceeded"
