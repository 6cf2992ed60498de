"""Merchant page: its own products with stock (set a location's quantity) and its orders to ship,
through `serving.routers.catalog` (which applies the ownership check) and
`commerce.services.merchant_orders`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request

from commerce.services.merchant_orders import orders_to_ship
from serving.console.auth import MerchantOnly
from serving.console.web import attempt, redirect, render
from serving.deps import SessionDep, StateDep, ensure_merchant
from serving.routers import catalog as catalog_api
from serving.routers.common import PageOffset
from serving.schemas.catalog import StockSet

router = APIRouter(prefix="/shop")


def _merchant_id(principal, requested: str | None) -> str | None:
    """A merchant key sees its own shop; an admin picks one with ?merchant=."""
    return principal.merchant_id or requested


PAGE = 25


@router.get("")
async def shop(
    request: Request,
    session: SessionDep,
    principal: MerchantOnly,
    merchant: str | None = None,
    offset: PageOffset = 0,
):
    merchant_id = _merchant_id(principal, merchant)
    if merchant_id is None:
        return await render(request, "shop.html", title="Shop", merchant_id=None)
    ensure_merchant(principal, merchant_id)
    products, error = attempt(
        None,
        lambda: catalog_api.merchant_products(merchant_id, session, principal, None, PAGE, offset),
    )
    orders = orders_to_ship(session, merchant_id, limit=PAGE + 1)
    return await render(
        request, "shop.html", title="My shop", merchant_id=merchant_id, products=products,
        orders=orders[:PAGE], more_orders=len(orders) > PAGE, error=error,
    )  # fmt: skip


@router.post("/products/{product_id}/stock")
async def set_stock(
    request: Request,
    product_id: str,
    session: SessionDep,
    state: StateDep,
    principal: MerchantOnly,
    background: BackgroundTasks,
    location: Annotated[str, Form(min_length=1, max_length=64)],
    quantity: Annotated[int, Form()],
):
    def run():
        return catalog_api.set_stock(
            product_id, location, StockSet(quantity=quantity), session, state, principal, request, background
        )

    product, error = attempt(session, run)
    if error:
        return await render(request, "error.html", status_code=422, title="Stock not changed", message=error)
    suffix = "" if principal.merchant_id else f"?merchant={product.merchant_id}"
    return redirect(f"/console/shop{suffix}")
