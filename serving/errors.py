"""Every refusal is an RFC 9457 problem (`application/problem+json`): `type`, `title`, `status`, `detail`,
`instance`, plus the extension members `code` (machine-readable, stable) and, for invalid requests, the
per-field `errors`. Built in one place (`problem`) for the routes, the exception handlers and the ASGI
middleware alike; every /v1 operation documents the refusals it can give.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from commerce.errors import Conflict, DomainError, Forbidden, LimitExceeded, NotFound, ValidationError
from commerce.files import STORAGE_FULL, is_storage_refusal
from serving.resilience import (
    RETRY_AFTER_SECONDS,
    CommitOutcomeUnknown,
    DatabaseBusy,
    is_cancel_request,
    is_connection_limit,
    is_contention,
    is_outage,
    is_refused_outright,
    unavailable_detail,
)
from training.registry_view import RegistryUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:crosscart:problem:"
STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (Forbidden, 403),
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
    507: "insufficient_storage",
}


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    errors: list[dict[str, Any]] | None = None


def problem(status: int, code: str, detail: str, instance: str | None = None, errors=None) -> dict:
    body = {
        "type": TYPE_PREFIX + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    return body


OUTCOME_UNKNOWN = (
    "the request reached its database COMMIT, then failed: the change may or may not have been kept; "
    "read it back (e.g. list the orders) before retrying"
)


def problem_response(
    status: int, code: str, detail: str, instance: str | None = None, errors=None, headers=None
):
    return JSONResponse(
        jsonable_encoder(problem(status, code, detail, instance, errors)),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


async def send_problem(send, scope, status: int, code: str, detail: str, headers=()) -> None:
    """The same problem body from pure ASGI middleware."""
    data = json.dumps(problem(status, code, detail, scope.get("path"))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


#: Headers of a 429: the rate-limit ones (serving.security.RateDecision) are absent when the refusal is
#: for too many failed keys from one address rather than for the caller's quota.
RATE_LIMIT_HEADERS = {
    "Retry-After": {
        "description": "Seconds until a request is allowed again.",
        "schema": {"type": "integer"},
    },
    "RateLimit": {
        "description": "The caller's quota now (draft-ietf-httpapi-ratelimit-headers): "
        '`"policy";r=remaining;t=seconds until the quota is back`. Sent with every response to a '
        "throttled caller.",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'The quota: `"per-key";q=requests;w=window seconds` (`"per-address"` without a key).',
        "schema": {"type": "string"},
    },
}


def _documented(status: int) -> dict[str, Any]:
    documented = {
        "description": CODE_BY_STATUS.get(status, HTTPStatus(status).phrase.lower()).replace("_", " "),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}},
    }
    if status == 429:
        documented["headers"] = RATE_LIMIT_HEADERS
    return documented


#: What any /v1 operation can answer (authentication, validation, rate limit, missing resources, the
#: database unavailable or busy: serving/resilience.py);
#: state-changing operations add 400 (bad Idempotency-Key), 409 and 413, and a route declares any other
#: refusal it gives in its own `responses` (`document` turns every one into a problem response).
COMMON_STATUSES = (401, 403, 404, 422, 429, 503)
WRITE_STATUSES = (400, 409, 413)
WRITE_METHODS = {"post", "put", "patch", "delete"}


def document(app: FastAPI, prefix: str = "/v1") -> None:
    """Declare on each /v1 operation the problem responses it can really give, by method."""
    build = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ProblemOut"] = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
        for path, item in schema.get("paths", {}).items():
            if not path.startswith(prefix):
                continue
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
                statuses = set(COMMON_STATUSES) | declared
                statuses |= set(WRITE_STATUSES) if method in WRITE_METHODS else set()
                for status in sorted(statuses):
                    responses[str(status)] = _documented(status)
        return schema

    app.openapi = openapi


def status_for(error: DomainError) -> int:
    for kind, code in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return code
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return problem_response(status_for(exc), exc.code, exc.message, request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = CODE_BY_STATUS.get(exc.status_code, "error")
        return problem_response(exc.status_code, code, str(exc.detail), request.url.path, headers=exc.headers)

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        path = request.url.path
        refused = database_refusal(request.app.state.serving, request.method, path, exc)
        if refused is None:
            raise exc
        headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
        return problem_response(refused.status, refused.code, refused.detail, path, headers=headers)

    @app.exception_handler(CommitOutcomeUnknown)
    async def commit_outcome_unknown(request: Request, exc: CommitOutcomeUnknown) -> JSONResponse:
        detail = OUTCOME_UNKNOWN
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return problem_response(503, "outcome_unknown", detail, request.url.path, headers=headers)

    @app.exception_handler(DatabaseBusy)
    async def database_busy(request: Request, exc: DatabaseBusy) -> JSONResponse:
        """Every database slot stayed taken: refused before any work, so nothing was changed."""
        return _unavailable(f"the service is busy ({exc}); retry shortly", 1, request.url.path)

    @app.exception_handler(RegistryUnavailable)
    async def registry_unavailable(request: Request, exc: RegistryUnavailable) -> JSONResponse:
        """MLflow down or not answering: the models served keep serving; reading or moving the registry
        waits for it."""
        detail = "the model registry is unavailable; retry shortly"
        return _unavailable(detail, RETRY_AFTER_SECONDS, request.url.path)

    @app.exception_handler(OSError)
    async def storage_refused(request: Request, exc: OSError) -> JSONResponse:
        """The host's storage refused a file this request wrote (`commerce.files.is_storage_refusal`):
        full is a 507, read-only or failing a 503 with Retry-After; the file is named in the log only
        (a host path is not the caller's business). Any other OSError is a bug and stays a 500."""
        if not is_storage_refusal(exc):
            raise exc
        path = request.url.path
        log.error("host storage refused a write (%s): %s %s", exc, request.method, path)
        if exc.errno in STORAGE_FULL:
            detail = "the server's disk is full; retry once room is made"
            return problem_response(507, CODE_BY_STATUS[507], detail, path)
        detail = "the server's storage refused a write (read-only or failing); retry shortly"
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return problem_response(503, "storage_unavailable", detail, path, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return problem_response(422, "invalid_request", detail, request.url.path, errors=errors)


def _nul_in_text(exc: Exception) -> bool:
    """PostgreSQL refused a NUL character in a string the request carried (a path, query or body field):
    the client's mistake, not the server's (it was a 500 for every text input on PostgreSQL)."""
    return isinstance(exc, sa_exc.DataError) and "NUL (0x00)" in str(exc.orig)


#: A unique constraint's refusal: SQLSTATE 23505 on PostgreSQL, SQLite's extended result codes.
UNIQUE_VIOLATIONS = ("23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
LOST_RACE_DETAIL = (
    "another request created the same thing at the same moment and was kept; nothing of this one was: "
    "read it back before retrying"
)


def lost_race(exc: Exception) -> bool:
    """A create lost a race: every service checks "already exists?" before its INSERT (a 409 with its own
    code), but two requests at once on PostgreSQL both pass that read and the loser's INSERT meets the
    unique constraint. That is the same 409 a moment later, not a server error (it was a 500)."""
    orig = getattr(exc, "orig", None)
    return isinstance(exc, sa_exc.IntegrityError) and any(
        getattr(orig, name, None) in UNIQUE_VIOLATIONS for name in ("sqlstate", "sqlite_errorname")
    )


BUSY_DETAIL = "the database is busy right now; retry shortly"
CANCELLED_DETAIL = "the database cancelled this request's statement; nothing was kept; retry shortly"


def log_cancelled(method: str, path: str) -> None:
    """The line a statement cancelled by a cancel request leaves (`is_cancel_request`): answered 503 with
    `CANCELLED_DETAIL` and `Retry-After: RETRY_AFTER_SECONDS`, here and by `serving.idempotency`."""
    log.warning("database statement cancelled by a cancel request (pg_cancel_backend?): %s %s", method, path)


@dataclass(frozen=True)
class DatabaseRefusal:
    """How a request that met a database error is answered: status, problem code, detail, Retry-After."""

    status: int
    code: str
    detail: str
    retry_after: int | None = None


def database_refusal(state, method: str, path: str, exc: Exception) -> DatabaseRefusal | None:
    """The answer to a database error, or None for a bug (a 500). A lost database is a 503 with
    Retry-After (the outage is logged once by DatabaseHealth), so is contention (a row lock past
    `lock_timeout`, a deadlock, `statement_timeout`: rolled back, busy rather than down, `Retry-After: 1`;
    PostgreSQL's own log has the statements); a create that lost a uniqueness race is a 409 (`lost_race`).
    A statement an operator cancelled (`pg_cancel_backend`) is rolled back too and the database is up,
    but it is logged and answered `Retry-After: 5`: it was stopped on purpose (a runaway query, locks
    cleared for maintenance), so not re-run at once. The API's handler and the console's forms
    (`serving.console.web.attempt`) answer with it."""
    if is_cancel_request(exc):  # before contention: an operator stopping a statement is worth a line
        log_cancelled(method, path)
        return DatabaseRefusal(503, CODE_BY_STATUS[503], CANCELLED_DETAIL, RETRY_AFTER_SECONDS)
    if is_refused_outright(exc, state.session_factory.kw["bind"]):  # none in use: nothing served
        state.db_health.failed(exc)
        return DatabaseRefusal(503, CODE_BY_STATUS[503], unavailable_detail(exc), RETRY_AFTER_SECONDS)
    if is_connection_limit(exc):  # the pool's connections still serve: `/ready` says `degraded`
        state.db_health.connection_limited()
    if is_contention(exc):
        return DatabaseRefusal(503, CODE_BY_STATUS[503], BUSY_DETAIL, 1)
    if _nul_in_text(exc):
        return DatabaseRefusal(422, "invalid_request", "text may not contain NUL (\\u0000)")
    if lost_race(exc):
        return DatabaseRefusal(409, "already_exists", LOST_RACE_DETAIL)
    if not is_outage(exc):
        return None
    state.db_health.failed(exc)
    return DatabaseRefusal(503, CODE_BY_STATUS[503], unavailable_detail(exc), RETRY_AFTER_SECONDS)


def _unavailable(detail: str, retry_after: int, instance: str) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)}
    return problem_response(503, CODE_BY_STATUS[503], detail, instance, headers=headers)
