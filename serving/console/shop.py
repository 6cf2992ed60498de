"""Merchant page: its own products with stock (set a location's quantity), a new product's listing, its
orders to ship and its shipping rule (which logistics partner ships its orders), through
`serving.routers.catalog` and `serving.routers.logistics` (which apply the ownership check) and
`commerce.services.merchant_orders`; its shipped orders and one order's tracking (read-only): carrier,
tracking number, every status change and carrier scan in time order (`merchant_order`: the reasons only of
an order all its own) and the delivery window promised at checkout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.concurrency import run_in_threadpool

from commerce.services import logistics
from commerce.services.catalog import get_product, leaf_categories
from commerce.services.merchant_orders import merchant_order, orders_to_ship, shipped_orders
from commerce.services.merchants import get_merchant
from commerce.sqltypes import utcnow
from serving.console.auth import MerchantOnly
from serving.console.merchant import MerchantPage, merchant_of, merchant_picker, merchant_query
from serving.console.web import FormRoute, attempt, past_the_end, redirect, refusal_page, render
from serving.deps import ProductId, SessionDep, StateDep
from serving.routers import catalog as catalog_api
from serving.routers import logistics as logistics_api
from serving.routers.common import IntId, PageOffset
from serving.schemas.catalog import ProductCreate, StockSet
from serving.schemas.logistics import ShippingRuleIn

router = APIRouter(prefix="/shop", route_class=FormRoute)


PAGE = 25
STOCK_ROWS = 3  # initial stock locations on the new-product form; more through "Set stock" afterwards
#: The new-product form's fields: the API's ProductCreate without the admin-only terms (self-operated,
#: cost price; serving.field_access), which the console does not offer.
PRODUCT_FIELDS = ("title", "sku", "category_id", "brand", "origin_country", "price", "fulfillment")


@router.get("")
async def shop(request: Request, scope: MerchantPage, offset: PageOffset = 0):
    if scope.merchant_id is None:
        return await merchant_picker(request, "Shop", scope.db)
    return await _shop_page(request, scope.db, scope.principal, scope.merchant_id, offset)


async def _shop_page(
    request: Request, session, principal, merchant_id: str, offset: int = 0, status_code: int = 200, **extra
):
    products, error = await attempt(
        request,
        None,
        lambda: catalog_api.merchant_products(merchant_id, session, principal, None, PAGE, offset),
    )
    if moved := past_the_end(request, products):
        return moved

    def read():
        merchant = get_merchant(session, merchant_id)
        return dict(
            orders=orders_to_ship(session, merchant_id, limit=PAGE + 1),
            rule=logistics_api.get_shipping_rule(merchant_id, session, principal),
            partners=logistics.list_partners(session), categories=leaf_categories(session),
            brands=sorted(b.brand for b in merchant.brands), merchant_name=merchant.name,
            warehouses=logistics.list_warehouses(session, merchant_id=merchant_id),
        )  # fmt: skip

    page = await run_in_threadpool(read)
    orders = page.pop("orders")
    return await render(
        request, "shop.html", status_code=status_code, title="My shop", merchant_id=merchant_id,
        query=merchant_query(principal, merchant_id),
        products=products, orders=orders[:PAGE], more_orders=len(orders) > PAGE, error=error,
        stock_rows=range(STOCK_ROWS), **page, **extra,
    )  # fmt: skip


@router.get("/orders")
async def shipped(request: Request, scope: MerchantPage, offset: PageOffset = 0):
    """The merchant's shipped orders, most recently shipped first, with carrier and latest scan."""
    if scope.merchant_id is None:
        return await merchant_picker(request, "Shipments", scope.db)
    page = await run_in_threadpool(shipped_orders, scope.db, scope.merchant_id, limit=PAGE, offset=offset)
    if moved := past_the_end(request, page):
        return moved
    return await render(
        request, "shipments.html", title="Shipments", merchant_id=scope.merchant_id, page=page,
        merchant_name=scope.merchant_name, query=scope.query, now=utcnow(),
    )  # fmt: skip


@router.get("/orders/{order_id}")
async def order_tracking(request: Request, order_id: IntId, scope: MerchantPage):
    """One of the merchant's orders: its own lines, the parcel and every step in time order. Another
    merchant's order is a 404, as a missing one."""
    if scope.merchant_id is None:
        return redirect("/console/shop/orders")
    view = await run_in_threadpool(merchant_order, scope.db, scope.merchant_id, order_id)
    return await render(
        request, "order.html", title=f"Order {order_id}", merchant_id=scope.merchant_id, view=view,
        query=scope.query, now=utcnow(),
    )  # fmt: skip


@router.post("/shipping-rule")
async def set_shipping_rule(
    request: Request,
    session: SessionDep,
    principal: MerchantOnly,
    merchant_id: Annotated[str, Form(max_length=64)] = "",
    partner_id: Annotated[str, Form(max_length=64)] = "",
    max_days: Annotated[str, Form(max_length=8)] = "",
):
    """Ship with the chosen partner, or (no partner chosen) the cheapest arriving within `max_days`."""
    merchant_id = await run_in_threadpool(merchant_of, session, principal, merchant_id)
    if merchant_id is None:
        return redirect("/console/shop")

    def run():
        body = ShippingRuleIn(partner_id=partner_id or None, max_days=max_days or None)
        return logistics_api.set_shipping_rule(merchant_id, body, session, principal)

    _, error = await attempt(request, session, run)
    if error:
        form = {"partner_id": partner_id, "max_days": max_days}
        return await _shop_page(
            request,
            session,
            principal,
            merchant_id,
            status_code=error.status_code,
            rule_error=error,
            rule_form=form,
        )
    return redirect(f"/console/shop{merchant_query(principal, merchant_id)}")


@router.post("/products/{product_id}/stock")
async def set_stock(
    request: Request,
    product_id: ProductId,
    session: SessionDep,
    state: StateDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
    location: Annotated[str, Form(min_length=1, max_length=64)],
    quantity: Annotated[str, Form(max_length=16)],
):
    """Set a location's units through the API's `set_stock`; the quantity is read by its schema (`StockSet`),
    not as FastAPI reads an int form field (`1_0` was 10 units)."""

    def run():
        return catalog_api.set_stock(
            product_id, location, StockSet(quantity=quantity), session, state, principal, request, background
        )

    product, error = await attempt(request, session, run)
    if error is None:
        return redirect(f"/console/shop{merchant_query(principal, product.merchant_id)}")
    if error.status_code in (403, 404):  # not a product (or location) of this shop: the refusal alone
        return await refusal_page(request, "Stock not changed", error)
    merchant_id, unknown = await attempt(request, None, lambda: _shop_of(session, principal, product_id))
    if unknown is not None:
        return await refusal_page(request, "Stock not changed", unknown)
    typed = {"product_id": product_id, "location": location, "quantity": quantity}
    return await _shop_page(
        request, session, principal, merchant_id, status_code=error.status_code, stock_error=error,
        stock_form=typed,
    )  # fmt: skip


def _shop_of(session, principal, product_id: str) -> str:
    """The shop a refused quantity is shown on. The quantity is refused before any product is read, as
    the API's 422 is: a merchant key's own shop whatever product was named (the named product's shop
    was a 500 for a made-up id and a 403 for another merchant's hidden one, telling which ids exist);
    an admin's, the product's merchant's (404 for a made-up id)."""
    return principal.merchant_id or get_product(session, product_id).merchant_id


def _stock_of(form) -> dict[str, str]:
    """The filled stock rows of the new-product form, location -> units (validated by ProductCreate)."""
    rows = ((form.get(f"location_{i}") or "", form.get(f"units_{i}") or "0") for i in range(STOCK_ROWS))
    return {location.strip(): units for location, units in rows if location.strip()}


@router.post("/products")
async def new_product(
    request: Request,
    session: SessionDep,
    state: StateDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
):
    """List a new product through the API's `POST /v1/merchants/{id}/products` (ownership, validation and
    the merchant's standing are its checks); a refusal shows the form again with the reason and the input."""
    form = await request.form()
    merchant_id = await run_in_threadpool(merchant_of, session, principal, form.get("merchant_id"))
    if merchant_id is None:
        return redirect("/console/shop")
    fields = {name: (form.get(name) or "").strip() for name in PRODUCT_FIELDS}

    def publish():
        body = ProductCreate(**fields, stock=_stock_of(form))
        return catalog_api.publish_product(merchant_id, body, session, state, principal, request, background)

    _, error = await attempt(request, session, publish)  # its shop was checked: a 403 is a location's
    if error:
        typed = {**fields, **{k: form.get(k) or "" for k in form if k.startswith(("location_", "units_"))}}
        return await _shop_page(
            request, session, principal, merchant_id, status_code=error.status_code, product_error=error,
            product_form=typed,
        )  # fmt: skip
    return redirect(f"/console/shop{merchant_query(principal, merchant_id)}")
