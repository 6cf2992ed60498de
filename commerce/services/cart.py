"""The shopper's cart: set quantities, price it (`quote_cart`) and check it out (`checkout_cart`).

Adding units logs a `cart` behaviour event, which feeds the recommenders like any other event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from commerce.carts import CartItem
from commerce.catalog import Product
from commerce.errors import ValidationError
from commerce.events import record_events
from commerce.orders import Order
from commerce.services._util import get_or_404
from commerce.services.catalog import sellable_products
from commerce.services.checkout import MAX_LINE_QUANTITY, CartLine, Quote, checkout, quote
from commerce.shoppers import Shopper
from commerce.sqltypes import as_utc, utcnow


def get_cart(session: Session, shopper_id: str) -> list[CartItem]:
    get_or_404(session, Shopper, shopper_id, "shopper")
    stmt = select(CartItem).where(CartItem.shopper_id == shopper_id)
    return list(session.scalars(stmt.order_by(CartItem.added_at, CartItem.product_id)))


def set_item(
    session: Session,
    shopper_id: str,
    product_id: str,
    quantity: int,
    *,
    session_id: str | None = None,
    at: datetime | None = None,
) -> list[CartItem]:
    """Set a product's quantity in the cart (0 removes it); returns the cart."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_LINE_QUANTITY:
        raise ValidationError(
            f"quantity must be an integer in 0..{MAX_LINE_QUANTITY}", code="invalid_quantity"
        )
    at = as_utc(at or utcnow())
    get_or_404(session, Shopper, shopper_id, "shopper")
    get_or_404(session, Product, product_id, "product")
    item = session.get(CartItem, (shopper_id, product_id))
    if quantity == 0:
        if item is not None:
            session.delete(item)
            session.flush()
        return get_cart(session, shopper_id)
    if not sellable_products(session, [product_id]):
        raise ValidationError(f"product {product_id!r} is not for sale", code="not_sellable")
    added = quantity - (item.quantity if item else 0)
    if item is None:
        session.add(CartItem(shopper_id=shopper_id, product_id=product_id, quantity=quantity, added_at=at))
    else:
        item.quantity = quantity
    if added > 0:
        event = {
            "event_id": f"cart:{uuid.uuid4().hex}",
            "ts": at,
            "shopper_id": shopper_id,
            "product_id": product_id,
            "event_type": "cart",
            "quantity": added,
            "session_id": session_id,
        }
        record_events(session, [event])
    session.flush()
    return get_cart(session, shopper_id)


def clear_cart(session: Session, shopper_id: str) -> None:
    get_or_404(session, Shopper, shopper_id, "shopper")
    session.execute(delete(CartItem).where(CartItem.shopper_id == shopper_id))


def _lines(session: Session, shopper_id: str, product_ids: Sequence[str] | None) -> list[CartLine]:
    items = get_cart(session, shopper_id)
    if product_ids is not None:
        unknown = set(product_ids) - {i.product_id for i in items}
        if unknown:
            raise ValidationError(f"not in the cart: {sorted(unknown)}", code="not_in_cart")
        items = [i for i in items if i.product_id in set(product_ids)]
    return [CartLine(i.product_id, i.quantity) for i in items]


def quote_cart(
    session: Session,
    shopper_id: str,
    *,
    product_ids: Sequence[str] | None = None,
    coupon_id: str | None = None,
    partner_id: str | None = None,
    at: datetime | None = None,
) -> Quote:
    """Price the cart (or the `product_ids` part of it) as checkout would, without writing anything."""
    lines = _lines(session, shopper_id, product_ids)
    return quote(session, shopper_id, lines, coupon_id=coupon_id, partner_id=partner_id, at=at)


def checkout_cart(
    session: Session,
    shopper_id: str,
    *,
    product_ids: Sequence[str] | None = None,
    coupon_id: str | None = None,
    partner_id: str | None = None,
    at: datetime | None = None,
) -> Order:
    """Check out the cart (or the `product_ids` part, e.g. the bonded goods) and remove those items."""
    lines = _lines(session, shopper_id, product_ids)
    order = checkout(session, shopper_id, lines, coupon_id=coupon_id, partner_id=partner_id, at=at)
    session.execute(
        delete(CartItem).where(
            CartItem.shopper_id == shopper_id, CartItem.product_id.in_([line.product_id for line in lines])
        )
    )
    return order
