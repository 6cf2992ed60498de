"""Catalog: merchant applications and review, product publishing (own products only), listing and search."""

from __future__ import annotations

from typing import Annotated, Literal

from anyio import from_thread
from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request, status

from commerce.catalog import Fulfillment, Product
from commerce.merchants import Merchant
from commerce.services import catalog as products
from commerce.services import merchants
from commerce.sqltypes import utcnow
from serving.audit import audit
from serving.delivery import promised_delivery
from serving.deps import (
    Admin,
    CategoryId,
    MerchantFilter,
    MerchantId,
    MerchantOrAdmin,
    PrincipalDep,
    ProductId,
    SessionDep,
    StateDep,
    ensure_merchant,
    ensure_within,
    product_owner,
    visible_product,
)
from serving.routers.common import PageLimit, PageOffset, card, catalog_or_503
from serving.schemas.base import PLAIN_INT, PageOut
from serving.schemas.catalog import (
    CategoryOut,
    CommissionOut,
    CommissionSet,
    MerchantApply,
    MerchantOut,
    MerchantReview,
    ProductCreate,
    ProductOut,
    ProductUpdate,
    StockOut,
    StockSet,
)
from serving.schemas.recommendations import ProductCard
from serving.search import reindex_after
from serving.security import Principal

router = APIRouter(tags=["catalog"])


def _merchant(m: Merchant) -> MerchantOut:
    return MerchantOut(
        merchant_id=m.merchant_id,
        name=m.name,
        country=m.country,
        licence_no=m.licence_no,
        status=m.status,
        status_reason=m.status_reason,
        brands=sorted(b.brand for b in m.brands),
        created_at=m.created_at,
        reviewed_at=m.reviewed_at,
    )


def _product(p: Product, *, owner: bool = True) -> ProductOut:
    """A product; stock levels per location only for its `owner` (the merchant, admins): anyone else
    learns whether it is in stock, not how much a competitor holds or how much is reserved."""
    return ProductOut(
        product_id=p.product_id,
        sku=p.sku,
        merchant_id=p.merchant_id,
        title=p.title,
        category_id=p.category_id,
        brand=p.brand,
        origin_country=p.origin_country,
        price=p.price,
        fulfillment=p.fulfillment,
        self_operated=p.self_operated,
        status=p.status,
        in_stock=any(s.quantity > s.reserved for s in p.stock),
        stock=[StockOut(location=s.location, quantity=s.quantity, reserved=s.reserved) for s in p.stock]
        if owner
        else None,
        created_at=p.created_at,
    )


def _owned_product(session, principal: Principal, product_id: str) -> Product:
    """The caller's own product to change: one it may not even see is a made-up id's 404, not a 403 that
    says it exists (`visible_product`); another merchant's public one is 403."""
    product = visible_product(session, principal, product_id)
    ensure_merchant(principal, product.merchant_id)
    return product


@router.post("/merchants", response_model=MerchantOut, status_code=status.HTTP_201_CREATED)
def apply(body: MerchantApply, session: SessionDep, principal: PrincipalDep, state: StateDep) -> MerchantOut:
    """An overseas seller applies (no key needed); the merchant starts `pending` until an admin reviews.
    At most `merchant_applications_per_hour` per client address (or key), refused ones counted too: 429."""
    if (quota := from_thread.run(state.limiter.check_application, principal)) is not None:
        ensure_within(quota, f"at most {quota.limit} merchant applications an hour from one address or key")
    merchant = merchants.apply(session, merchants.MerchantApplication(**body.model_dump()))
    return _merchant(merchant)


@router.get("/merchants", response_model=PageOut[MerchantOut])
def list_merchants(
    session: SessionDep,
    _: Admin,
    status: Literal["pending", "approved", "rejected", "suspended"] | None = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[MerchantOut]:
    page = merchants.list_merchants(session, status=status, limit=limit, offset=offset)
    return PageOut(items=[_merchant(m) for m in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/merchants/{merchant_id}", response_model=MerchantOut)
def get_merchant(merchant_id: MerchantId, session: SessionDep, principal: MerchantOrAdmin) -> MerchantOut:
    ensure_merchant(principal, merchant_id)
    return _merchant(merchants.get_merchant(session, merchant_id))


@router.post("/merchants/{merchant_id}/review", response_model=MerchantOut)
def review(
    merchant_id: MerchantId,
    body: MerchantReview,
    session: SessionDep,
    state: StateDep,
    admin: Admin,
    request: Request,
    background: BackgroundTasks,
) -> MerchantOut:
    """Approve or reject an application; suspend or reinstate an approved merchant (with a reason)."""
    if body.decision in ("reject", "suspend") and not body.reason:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"a reason is required to {body.decision}")
    if body.decision == "approve":
        merchant = merchants.approve(session, merchant_id)
    elif body.decision == "reject":
        merchant = merchants.reject(session, merchant_id, body.reason)
    elif body.decision == "suspend":
        merchant = merchants.suspend(session, merchant_id, body.reason)
    else:
        merchant = merchants.reinstate(session, merchant_id, body.reason)
    audit(
        session,
        admin,
        "merchant.reviewed",
        "merchant",
        merchant_id,
        decision=body.decision,
        reason=body.reason,
    )
    state.catalog.request_refresh()
    reindex_after(request.app, background, merchant_id=merchant_id)
    return _merchant(merchant)


@router.put(
    "/categories/{category_id}/commission",
    response_model=CommissionOut,
    responses={404: {"description": "unknown category"}},
)
def set_category_commission(
    category_id: CategoryId, body: CommissionSet, session: SessionDep, state: StateDep, principal: Admin
) -> CommissionOut:
    """Set the category's commission rate (admins only; audited with the old and new rate). Orders keep
    the commission computed when they were placed, so the change applies to later orders only."""
    category, replaced = products.update_category_rates(
        session, category_id, commission_rate=body.commission_rate
    )
    old = replaced["commission_rate"]
    audit(
        session, principal, "category.commission_changed", "category", category_id,
        old=old, new=category.commission_rate,
    )  # fmt: skip
    state.catalog.request_refresh()
    return CommissionOut(
        category_id=category_id,
        commission_rate=category.commission_rate,
        previous_rate=old,
        changed_at=utcnow(),
    )


@router.get("/categories", response_model=PageOut[CategoryOut])
def list_categories(
    session: SessionDep,
    _: PrincipalDep,
    parent_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500), PLAIN_INT] = 500,
    offset: PageOffset = 0,
) -> PageOut[CategoryOut]:
    page = products.list_categories(session, parent_id=parent_id, limit=limit, offset=offset)
    return PageOut(
        items=[CategoryOut.model_validate(c, from_attributes=True) for c in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/merchants/{merchant_id}/products", response_model=ProductOut, status_code=status.HTTP_201_CREATED
)
def publish_product(
    merchant_id: MerchantId,
    body: ProductCreate,
    session: SessionDep,
    state: StateDep,
    principal: MerchantOrAdmin,
    request: Request,
    background: BackgroundTasks,
) -> ProductOut:
    """Publish a product for this merchant (a merchant key publishes only for its own merchant)."""
    ensure_merchant(principal, merchant_id)
    product = products.create_product(
        session, products.ProductInput(merchant_id=merchant_id, **body.model_dump())
    )
    if product.self_operated:
        audit(
            session,
            principal,
            "product.self_operated",
            "product",
            product.product_id,
            cost_price=product.cost_price,
        )
    state.catalog.request_refresh()
    reindex_after(request.app, background, product_ids=[product.product_id])
    return _product(product)


@router.get("/merchants/{merchant_id}/products", response_model=PageOut[ProductOut])
def merchant_products(
    merchant_id: MerchantId,
    session: SessionDep,
    principal: MerchantOrAdmin,
    status: Literal["listed", "delisted"] | None = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[ProductOut]:
    """Every product of the merchant, listed or not (the storefront listing shows only sellable ones)."""
    ensure_merchant(principal, merchant_id)
    page = products.list_products(session, merchant_id=merchant_id, status=status, limit=limit, offset=offset)
    return PageOut(items=[_product(p) for p in page.items], total=page.total, limit=limit, offset=offset)


@router.patch("/products/{product_id}", response_model=ProductOut)
def update_product(
    product_id: ProductId,
    body: ProductUpdate,
    session: SessionDep,
    state: StateDep,
    principal: MerchantOrAdmin,
    request: Request,
    background: BackgroundTasks,
) -> ProductOut:
    """Change title, price or listing status (delist / relist) of one's own product."""
    _owned_product(session, principal, product_id)
    product, old_price = products.update_product(session, product_id, **body.model_dump(exclude_unset=True))
    if product.price != old_price:
        audit(
            session,
            principal,
            "product.price_changed",
            "product",
            product_id,
            old=old_price,
            new=product.price,
        )
    state.catalog.request_refresh()
    reindex_after(request.app, background, product_ids=[product_id])
    return _product(product)


@router.put("/products/{product_id}/stock/{location}", response_model=ProductOut)
def set_stock(
    product_id: ProductId,
    location: str,
    body: StockSet,
    session: SessionDep,
    state: StateDep,
    principal: MerchantOrAdmin,
    request: Request,
    background: BackgroundTasks,
) -> ProductOut:
    product = _owned_product(session, principal, product_id)
    products.set_stock(session, product_id, location, body.quantity)
    session.refresh(product)
    state.catalog.request_refresh()
    reindex_after(request.app, background, product_ids=[product_id])
    return _product(product)


@router.get("/products", response_model=PageOut[ProductCard])
async def search_products(
    state: StateDep,
    _: PrincipalDep,
    merchant_id: MerchantFilter,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Title contains (case-insensitive substring); GET /v1/search ranks by relevance.",
        ),
    ] = None,
    category: str | None = None,
    fulfillment: Fulfillment | None = None,
    origin: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    sort: Literal["popularity", "price_asc", "price_desc"] = "popularity",
    limit: PageLimit = 20,
    offset: PageOffset = 0,
) -> PageOut[ProductCard]:
    """Sellable products (listed, approved merchant, in stock), searched in the in-memory catalog."""
    catalog = catalog_or_503(state)
    positions, total = catalog.search(
        q=q,
        merchant_id=merchant_id,
        sort=sort,
        limit=limit,
        offset=offset,
        category=category,
        fulfillment=fulfillment,
        origin=origin,
    )
    return PageOut(
        items=[ProductCard(**card(catalog, int(p))) for p in positions],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/products/{product_id}", response_model=ProductOut)
def get_product(
    product_id: ProductId,
    session: SessionDep,
    state: StateDep,
    principal: PrincipalDep,
    region: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Buyer's province: adds `delivery`")
    ] = None,
) -> ProductOut:
    """A product page. Unsellable products are visible only to their merchant and admins. With a
    region, an in-stock listed product also shows the delivery window checkout would promise for one
    unit (anyone sees that and whether it is in stock, never where or how much)."""
    product = visible_product(session, principal, product_id)
    out = _product(product, owner=product_owner(principal, product.merchant_id))
    if region is not None and out.in_stock and product.status == "listed":
        out.delivery = promised_delivery(session, state.delivery.current, product_id, region, utcnow())
    return out
