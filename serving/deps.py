"""Typed dependencies: the database session, the caller and role checks."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
from anyio.to_thread import run_sync
from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import Session

from commerce.ads import KeywordCampaign
from commerce.campaigns import Campaign
from commerce.catalog import Category, Product
from commerce.db import read_only
from commerce.merchants import Merchant
from commerce.services import catalog as products
from commerce.services._util import lookup_name, not_found, stored_form, stored_key
from commerce.services.access import authenticate_many
from commerce.shoppers import Shopper
from serving.resilience import (
    CommitOutcomeUnknown,
    DatabaseBusy,
    WriteInReadOnlyTransaction,
    is_contention,
    is_outage,
    is_read_only,
    refused_as_read_only,
)
from serving.security import ANONYMOUS, Principal, RateDecision, client_address
from serving.state import ServingState

log = logging.getLogger(__name__)
T = TypeVar("T")


async def get_state(request: Request) -> ServingState:
    """Async on purpose: a plain `def` dependency would cost a thread-pool hop on every request."""
    return request.app.state.serving


StateDep = Annotated[ServingState, Depends(get_state)]


def _finish(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def _deadline(request: Request, state: ServingState) -> float:
    """The request's one deadline for database slots (stamped on arrival by DeadlineStamp)."""
    deadline = getattr(request.state, "db_deadline", None)
    if deadline is None:
        deadline = request.state.db_deadline = state.db_gate.deadline()
    return deadline


READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


def writes_on_get(endpoint):
    """Marks a GET endpoint that writes through its session: it gets a read-write transaction."""
    endpoint.writes_on_get = True
    return endpoint


def reads_only(request: Request) -> bool:
    """The one rule: a GET or HEAD request's transaction is read-only unless its endpoint is marked
    `writes_on_get`. On SQLite it then begins deferred, reading a WAL snapshot instead of queueing for
    the write lock (BEGIN IMMEDIATE) behind writers and other readers; on PostgreSQL, BEGIN READ ONLY.
    A write through it is refused by the database: a 500, never a silent success."""
    if request.method not in READ_ONLY_METHODS:
        return False
    return not getattr(request.scope.get("endpoint"), "writes_on_get", False)


def _raise_if_wrote_read_only(read_only_request: bool, error: BaseException) -> None:
    """A read-only request's write refused as read-only is the endpoint's bug (a 500), not a server
    taking no writes (on PostgreSQL both are SQLSTATE 25006): never a 503 or the database called down."""
    if read_only_request and refused_as_read_only(error):
        first_line = (str(error).splitlines() or [""])[0]
        raise WriteInReadOnlyTransaction(f"a write inside a read-only request: {first_line}") from error


async def get_session(request: Request, state: StateDep) -> AsyncIterator[Session]:
    """One transaction per request (read-only when `reads_only`): committed when the endpoint returns
    (and its response validated), rolled back if anything raised. The request first waits, on the event
    loop, for a database slot (serving.resilience explains why); the commit runs on threads of its own."""
    async with state.db_gate.request_slot(_deadline(request, state)):
        read_only_request = reads_only(request)
        session = (state.read_only_sessions if read_only_request else state.session_factory)()
        try:
            yield session
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                try:
                    await run_sync(_finish, session, False, limiter=state.db_gate.exit_threads)
                except Exception:  # the original error is the one to report
                    log.debug("rollback failed", exc_info=True)
            _raise_if_wrote_read_only(read_only_request, exc)
            raise
        # From here the request may have taken effect whatever happens to its response: its
        # Idempotency-Key is kept (serving.idempotency) so that a retry never runs it twice.
        request.state.commit_sent = True
        # what the commit shows of the database: nothing when no statement ran since the last rollback,
        # reads only when they ran read-only (a console form it refused and the page drawn again after:
        # `serving.console.web.attempt`)
        answered = session.in_transaction()
        read = read_only_request or bool(session.get_bind().get_execution_options().get("read_only"))
        try:
            await run_sync(_finish, session, True, limiter=state.db_gate.exit_threads)
        except Exception as exc:
            if read_only_request and refused_as_read_only(exc):
                request.state.commit_sent = False  # refused at the flush: nothing was kept
            _raise_if_wrote_read_only(read_only_request, exc)
            if not is_outage(exc) or is_read_only(exc):  # refused at the flush: nothing was kept
                if isinstance(exc, DBAPIError):  # the database refused it (a lock wait, a constraint): not
                    request.state.commit_sent = False  # kept, so the key is freed for the retry asked for
                raise
            state.db_health.failed(exc)
            raise CommitOutcomeUnknown(str(exc).splitlines()[0]) from exc
        if answered:
            state.db_health.succeeded(read=read)  # a read-only commit proves nothing about writes


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def after_commit(session: Session, work: Callable[[], None]) -> None:
    """Run `work` once the request's transaction has committed (never if it rolls back), outside it: a
    side effect on another store (Redis) that waits there while the transaction is open holds its locks
    that long, SQLite's write lock included. `work` must not raise: the request has taken effect."""
    event.listen(session, "after_commit", lambda _session: work(), once=True)


def stored_id(model: type, name: str, where: type[Path] | type[Query] = Path):
    """The type of path parameter `name`, a chosen id of a `model` row (merchant, product, campaign,
    keyword campaign, category, shopper: `ShopperId`), read as `stored_key` reads it:
    as sent if a row has that id (one stored before ids were normalised), else in the one form ids are
    stored in, so `/v1/products/ｐ1` (a Chinese input method's full width) or `p1%20` names product
    `p1`. The endpoint and `ensure_shopper` see the id of the row, not the spelling in the URL. With
    `where=Query`, an optional filter of a list (None when not given), read the same way: compared as
    sent, `?campaign_id=ｃ1` matched nothing."""

    def resolve(session: SessionDep, **params: str | None) -> str | None:
        value = params[name]
        return None if value is None else stored_key(session, model, value)

    keyword = inspect.Parameter.KEYWORD_ONLY
    if where is Path:
        param = inspect.Parameter(name, keyword, annotation=Annotated[str, Path()])
    else:
        param = inspect.Parameter(
            name, keyword, annotation=Annotated[str | None, Query(max_length=64)], default=None
        )
    resolve.__signature__ = inspect.Signature(
        [param, inspect.Parameter("session", keyword, annotation=SessionDep)]
    )
    return Annotated[str if where is Path else str | None, Depends(resolve)]


MerchantId = stored_id(Merchant, "merchant_id")
ProductId = stored_id(Product, "product_id")
CategoryId = stored_id(Category, "category_id")
CampaignId = stored_id(Campaign, "campaign_id")
KeywordCampaignId = stored_id(KeywordCampaign, "campaign_id")
CampaignFilter = stored_id(Campaign, "campaign_id", Query)


#: `{shopper_id}` of a route with a database session (orders, coupons, the cart's quote), read by the
#: database alone (`stored_id`), as an event's shopper and an exposure's unit are: what these routes store
#: is a row's id, so a key's binding is checked on the id they store.
ShopperId = stored_id(Shopper, "shopper_id")

#: Why a look-alike shopper id of a snapshot page may go unread: the database cannot answer, or no
#: request slot came free in time.
_UNANSWERED = (DBAPIError, SQLAlchemyTimeoutError, DatabaseBusy)


def _read_only_call(state: ServingState, read: Callable[[Session], T]) -> T:
    with read_only(state.session_factory) as session:
        return read(session)


async def read_in_slot(request: Request, state: ServingState, read: Callable[[Session], T]) -> T:
    """`read(session)` in a read-only transaction of its own, on a thread, in one of the request slots that
    bound how many requests use the database at once: for a page answered from memory that now and then
    needs the database (a look-alike shopper id, a category the catalog does not know). Read beside the
    slots, it reached the database with every slot taken. `DatabaseBusy` (503) when none comes free by
    the request's deadline."""
    async with state.db_gate.request_slot(_deadline(request, state)):
        return await run_sync(_read_only_call, state, read)


async def stored_shopper(request: Request, state: ServingState, shopper_id: str) -> str:
    """The shopper id of a page answered from snapshots (recommendations, buy-again, search's
    `?shopper_id=`): as sent if the served recommender learned it so, else as `stored_key` reads it (a
    row's id as sent, else the normal form). Read as sent, `/v1/shoppers/ｓ1/recommendations` was a
    cold-start page of a shopper nobody is, and a 403 for s1's own key. An id in normal form (nearly
    every request) is taken at once; a look-alike is looked up on a thread in a request's database slot,
    and read in its normal form when the database cannot answer (these pages were answered from
    snapshots while it was down; a look-alike made them 503). Ownership (`ensure_shopper`) is checked on
    the id this returns, so a look-alike reaches the shopper it names and no other."""
    if lookup_name(shopper_id) == shopper_id or state.models.current.knows(shopper_id):
        return shopper_id
    try:
        return await read_in_slot(request, state, lambda session: stored_key(session, Shopper, shopper_id))
    except _UNANSWERED as exc:
        if is_outage(exc) and not isinstance(exc, DatabaseBusy):
            state.db_health.failed(exc)
        log.info("shopper id %r read in its normal form: %s", shopper_id, type(exc).__name__)
        return lookup_name(shopper_id)


async def _storefront_shopper(request: Request, state: StateDep, shopper_id: Annotated[str, Path()]) -> str:
    return await stored_shopper(request, state, shopper_id)


#: `{shopper_id}` of a storefront page answered from snapshots (recommendations, buy-again).
StorefrontShopperId = Annotated[str, Depends(_storefront_shopper)]


async def catalog_merchant(
    state: StateDep, merchant_id: Annotated[str | None, Query(max_length=64)] = None
) -> str | None:
    """`?merchant_id=` of the storefront's lists (products, search), read as `stored_id` reads an id but
    against the catalog in memory: these lists make no database read. A merchant with no product in
    the catalog lists nothing in either spelling."""
    if merchant_id is None:
        return None
    catalog = state.catalog.current
    return stored_form(merchant_id, catalog.has_merchant if catalog is not None else lambda _: False)


MerchantFilter = Annotated[str | None, Depends(catalog_merchant)]

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cc_...`")


def _lookup_many(state: ServingState, keys: list[str]) -> dict[str, Principal]:
    with read_only(state.session_factory) as session:
        return {
            plaintext: Principal(
                role=key.role, key_id=key.id, shopper_id=key.shopper_id, merchant_id=key.merchant_id
            )
            for plaintext, key in authenticate_many(session, keys).items()
        }


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="unknown or revoked API key",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _principal_for_key(request: Request, state: ServingState, key: str, client: str) -> Principal:
    """Cache first; then, unless this address failed too often, the database (coalesced lookups on slots
    and threads of their own); a key seen valid before stays valid while the database cannot answer."""
    hit, principal = state.principals.get(key)
    if hit and principal is not None:
        return principal
    wait = state.auth_failures.retry_after(client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many failed authentication attempts from this address",
            headers={"Retry-After": str(wait)},
        )
    if not hit:
        asked_at = time.monotonic()
        try:
            principal = await state.key_lookups.lookup(key, _deadline(request, state))
        except Exception as exc:
            busy = isinstance(exc, DatabaseBusy) or is_contention(exc)  # busy, not down: no outage
            stale = state.principals.stale(key) if busy or is_outage(exc) else None
            if stale is None:
                raise
            if not busy:
                state.db_health.failed(exc)
            return stale
        state.db_health.succeeded(read=True)
        state.principals.put(key, principal, asked_at)
    if principal is None:
        state.auth_failures.failed(client)
        raise _unauthorized()
    return principal


def request_client(request: Request) -> str:
    """The client address an anonymous caller is counted by (`serving.security.client_address`)."""
    return client_address(request.client.host if request.client else None)


async def current_principal(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller (anonymous without a key), after the rate limit; 401 for an unknown key, 429 when over
    the rate limit or after too many failed keys from one address."""
    known = getattr(request.state, "principal", None)
    if known is not None:  # admitted already, for its Idempotency-Key (serving.idempotency): counted once
        return known
    client = request_client(request)
    if credentials is None:
        principal = Principal(role=ANONYMOUS, client=client)
    else:
        principal = await _principal_for_key(request, state, credentials.credentials, client)
    decision = await state.limiter.check(principal)
    if decision is not None:
        request.state.rate_limit = decision  # RateLimitHeaders adds its headers to the response
        ensure_within(decision, f"rate limit of {decision.limit} requests per minute exceeded")
    request.state.principal = principal  # for the access log
    return principal


def ensure_within(decision: RateDecision | None, detail: str) -> None:
    """A refused quota (requests or events) is a 429 carrying its RateLimit headers and Retry-After."""
    if decision is not None and not decision.allowed:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=detail, headers=decision.headers())


def ensure_events_within(quota: RateDecision | None) -> None:
    """A refused event quota (`RateLimiter.check_events` or `events_left`): the 429 `ensure_within` gives."""
    if quota is not None:
        detail = f"event quota of {quota.limit} events per minute exceeded ({quota.remaining} left)"
        ensure_within(quota, detail)


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


#: Who may read storefront pages (recommendations, rankings); a shopper key only its own shopper's.
STOREFRONT_ROLES = CAPABILITIES["storefront"]


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


def check_role(principal: Principal, roles: tuple[str, ...]) -> Principal:
    """`principal` if its role is in `roles`; else the refusal `access_refusal` gives."""
    if (refusal := access_refusal(principal, roles)) is not None:
        raise refusal
    return principal


def require(*roles: str):
    """A dependency admitting only `roles` (401 for anonymous callers, 403 for other roles)."""

    async def check(principal: PrincipalDep) -> Principal:
        return check_role(principal, roles)

    return check


def ensure_shopper(principal: Principal, shopper_id: str) -> None:
    """Object-level check: a shopper key reaches only its own shopper; other admitted roles pass."""
    if (refusal := access_refusal(principal, shopper_id=shopper_id)) is not None:
        raise refusal


def product_owner(principal: Principal, merchant_id: str) -> bool:
    """Admins and the product's own merchant: they see a product whatever its status."""
    return principal.role == "admin" or (
        principal.role == "merchant" and principal.merchant_id == merchant_id
    )


def ensure_product_visible(principal: Principal, product_id: str, merchant_id: str, public: bool) -> None:
    """The one rule for every product endpoint (its page, its similar items, its delivery quote): a
    product that is not public (listed from an approved merchant, in stock or not) is, to all but its
    owners, the 404 of an id that does not exist (`not_found`), so no answer tells which ids exist."""
    if not public and not product_owner(principal, merchant_id):
        raise not_found("product", product_id)


def visible_product(session: Session, principal: Principal, product_id: str) -> Product:
    """The product `product_id` names, if `principal` may see it (`ensure_product_visible`)."""
    product = products.get_product(session, product_id)
    public = bool(products.sellable_products(session, [product_id]))
    ensure_product_visible(principal, product_id, product.merchant_id, public)
    return product


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
