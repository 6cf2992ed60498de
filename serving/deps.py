"""Typed dependencies: the database session, the caller and role checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from commerce.access import authenticate
from commerce.db import transaction
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
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


# Who may do what: the one rule set. The API's dependencies below and the web console (its navigation
# and every console action) both read it. Promotion of models stays with admins.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "storefront": ("storefront", "shopper", "admin"),
    "shopper_self": ("shopper", "admin"),
    "merchant": ("merchant", "admin"),
    "marketing": ("marketer", "admin"),
    "experiments": ("data_scientist", "marketer", "admin"),
    "models": ("data_scientist", "admin"),
    "admin": ("admin",),
}


def check_role(principal: Principal, roles: tuple[str, ...]) -> Principal:
    """`principal` if its role is in `roles`; 401 for anonymous callers, 403 for other roles."""
    if principal.role not in roles:
        if principal.role == ANONYMOUS:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "an API key is required", {"WWW-Authenticate": "Bearer"}
            )
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role!r} may not do this")
    return principal


def require(*roles: str):
    """A dependency admitting only `roles` (401 for anonymous callers, 403 for other roles)."""

    async def check(principal: PrincipalDep) -> Principal:
        return check_role(principal, roles)

    return check


def ensure_shopper(principal: Principal, shopper_id: str) -> None:
    """Object-level check: a shopper key reaches only its own shopper; other admitted roles pass."""
    if principal.role == "shopper" and principal.shopper_id != shopper_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a shopper key reaches only its own shopper")


def ensure_merchant(principal: Principal, merchant_id: str) -> None:
    """Object-level check: a merchant key reaches only its own merchant's data."""
    if principal.role == "merchant" and principal.merchant_id != merchant_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a merchant key reaches only its own merchant")


Storefront = Annotated[Principal, Depends(require(*CAPABILITIES["storefront"]))]
ShopperSelf = Annotated[Principal, Depends(require(*CAPABILITIES["shopper_self"]))]
MerchantOrAdmin = Annotated[Principal, Depends(require(*CAPABILITIES["merchant"]))]
Marketer = Annotated[Principal, Depends(require(*CAPABILITIES["marketing"]))]
Experimenter = Annotated[Principal, Depends(require(*CAPABILITIES["experiments"]))]
ModelReader = Annotated[Principal, Depends(require(*CAPABILITIES["models"]))]
Admin = Annotated[Principal, Depends(require(*CAPABILITIES["admin"]))]
