"""Typed dependencies: the database session, the caller and role checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from commerce.db import transaction
from commerce.services.access import authenticate
from serving.security import ANONYMOUS, Principal
from serving.state import ServingState


async def get_state(request: Request) -> ServingState:
    """Async on purpose: a plain `def` dependency would cost a thread-pool hop on every request."""
    return request.app.state.serving


StateDep = Annotated[ServingState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """One transaction per request: committed if the endpoint returns, rolled back if it raises."""
    with transaction(state.session_factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cc_...`")


def _lookup(state: ServingState, key: str) -> Principal | None:
    with state.session_factory() as session:
        found = authenticate(session, key)
        if found is None:
            return None
        return Principal(
            role=found.role, key_id=found.id, shopper_id=found.shopper_id, merchant_id=found.merchant_id
        )


async def current_principal(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller (anonymous without a key), after the rate limit; 401 for an unknown key, 429 when over."""
    client = request.client.host if request.client else ""
    if credentials is None:
        principal = Principal(role=ANONYMOUS, client=client)
    else:
        hit, principal = state.principals.get(credentials.credentials)
        if not hit:
            principal = await run_in_threadpool(_lookup, state, credentials.credentials)
            state.principals.put(credentials.credentials, principal)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
    allowed, limit, reset = state.limiter.check(principal)
    if not allowed:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {limit} requests per minute exceeded",
            headers={"Retry-After": str(reset)},
        )
    request.state.principal = principal  # for the access log
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


#: Who may read storefront pages (recommendations, rankings); a shopper key only its own shopper's.
STOREFRONT_ROLES = ("storefront", "shopper", "admin")


def access_refusal(
    principal: Principal, roles: tuple[str, ...] | None = None, shopper_id: str | None = None
) -> HTTPException | None:
    """The one access rule, for the routes and the ASGI fast path alike: the refusal when `principal`
    lacks `roles` (401 anonymous, 403 another role) or, as a shopper key, asks for another shopper
    than its own; None when allowed."""
    if roles is not None and principal.role not in roles:
        if principal.role == ANONYMOUS:
            return HTTPException(
                status.HTTP_401_UNAUTHORIZED, "an API key is required", {"WWW-Authenticate": "Bearer"}
            )
        return HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role!r} may not do this")
    if shopper_id is not None and principal.role == "shopper" and principal.shopper_id != shopper_id:
        return HTTPException(status.HTTP_403_FORBIDDEN, "a shopper key reaches only its own shopper")
    return None


def require(*roles: str):
    """A dependency admitting only `roles` (401 for anonymous callers, 403 for other roles)."""

    async def check(principal: PrincipalDep) -> Principal:
        if (refusal := access_refusal(principal, roles)) is not None:
            raise refusal
        return principal

    return check


def ensure_shopper(principal: Principal, shopper_id: str) -> None:
    """Object-level check: a shopper key reaches only its own shopper; other admitted roles pass."""
    if (refusal := access_refusal(principal, shopper_id=shopper_id)) is not None:
        raise refusal


def ensure_merchant(principal: Principal, merchant_id: str) -> None:
    """Object-level check: a merchant key reaches only its own merchant's data."""
    if principal.role == "merchant" and principal.merchant_id != merchant_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a merchant key reaches only its own merchant")


Storefront = Annotated[Principal, Depends(require(*STOREFRONT_ROLES))]
ShopperSelf = Annotated[Principal, Depends(require("shopper", "admin"))]
MerchantOrAdmin = Annotated[Principal, Depends(require("merchant", "admin"))]
Marketer = Annotated[Principal, Depends(require("marketer", "admin"))]
Admin = Annotated[Principal, Depends(require("admin"))]
