"""One JSON shape for every refusal, `{"code", "message"}`, documented on every /v1 operation.

Domain errors keep their machine-readable `code`; HTTP errors and request validation get a code derived
from the status.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from commerce.errors import Conflict, DomainError, LimitExceeded, NotFound, ValidationError
from serving.resilience import (
    RETRY_AFTER_SECONDS,
    CommitOutcomeUnknown,
    DatabaseBusy,
    is_lock_timeout,
    is_outage,
)

STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),  # InvalidState and OutOfStock too
    (ValidationError, 422),
    (LimitExceeded, 422),
)
CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorOut(BaseModel):
    code: str
    message: str
    errors: list[dict[str, Any]] | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": code.replace("_", " ")}
    for status, code in CODE_BY_STATUS.items()
    if status != 405
}


def status_for(error: DomainError) -> int:
    for kind, code in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return code
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=status_for(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = {"code": CODE_BY_STATUS.get(exc.status_code, "error"), "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """A lost database is a 503 with Retry-After (the outage is logged once by DatabaseHealth), so is
        a row lock held past `lock_timeout` (busy, not an outage); any other database error is a bug and
        stays a 500."""
        if is_lock_timeout(exc):
            return _unavailable("the goods or coupon are in demand right now; retry shortly", 1)
        if not is_outage(exc):
            raise exc
        request.app.state.serving.db_health.failed(exc)
        return _unavailable("the database is unavailable; retry shortly", RETRY_AFTER_SECONDS)

    @app.exception_handler(CommitOutcomeUnknown)
    async def commit_outcome_unknown(_: Request, exc: CommitOutcomeUnknown) -> JSONResponse:
        body = {
            "code": "outcome_unknown",
            "message": "the database connection failed while committing: the change may or may not have "
            "been kept; read it back (e.g. list the orders) before retrying",
        }
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(DatabaseBusy)
    async def database_busy(_: Request, exc: DatabaseBusy) -> JSONResponse:
        """Every database slot stayed taken: refused before any work, so nothing was changed."""
        return _unavailable(f"the service is busy ({exc}); retry shortly", 1)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return JSONResponse(
            jsonable_encoder({"code": "invalid_request", "message": message, "errors": errors}),
            status_code=422,
        )


def _unavailable(message: str, retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"code": CODE_BY_STATUS[503], "message": message},
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )
