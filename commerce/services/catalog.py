"""Categories, products, stock, and the one definition of a sellable product."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, true, update
from sqlalchemy.orm import Session, aliased, selectinload

from commerce.bulk import insert_ignore
from commerce.catalog import (
    DEFAULT_TARIFF_RATE,
    DEFAULT_VAT_RATE,
    FULFILLMENT_MODES,
    LISTING_STATUSES,
    Category,
    Product,
    Stock,
)
from commerce.errors import Conflict, Forbidden, ValidationError
from commerce.logistics import Warehouse, usable_by
from commerce.merchants import Merchant
from commerce.services._util import (
    chosen_id,
    country_code,
    get_or_404,
    locked_or_404,
    new_id,
    required_text,
    stored_key,
)
from commerce.services.pagination import Page, paginate
from commerce.sqltypes import to_money, to_rate


def _rate(value: Decimal | str | int, field_name: str) -> Decimal:
    rate = to_rate(value, field=field_name)
    if not Decimal(0) <= rate < Decimal(1):
        raise ValidationError(f"{field_name} must be in [0, 1), got {rate}", code="invalid_rate")
    return rate


@dataclass(frozen=True)
class CategoryInput:
    category_id: str
    name: str
    parent_id: str | None = None
    vat_rate: Decimal = DEFAULT_VAT_RATE
    consumption_tax_rate: Decimal = Decimal("0")
    tariff_rate: Decimal = DEFAULT_TARIFF_RATE
    commission_rate: Decimal = Decimal("0.05")
    repurchasable: bool = False


def create_category(session: Session, data: CategoryInput) -> Category:
    category_id = chosen_id(session, data.category_id, Category.category_id, "category_id", true())  # all see
    if session.get(Category, category_id) is not None:
        raise Conflict(f"category {category_id!r} already exists", code="duplicate_category")
    parent = None if data.parent_id is None else get_category(session, data.parent_id)
    category = Category(
        category_id=category_id,
        parent_id=None if parent is None else parent.category_id,
        name=required_text(data.name, "name", 200),
        vat_rate=_rate(data.vat_rate, "vat_rate"),
        consumption_tax_rate=_rate(data.consumption_tax_rate, "consumption_tax_rate"),
        tariff_rate=_rate(data.tariff_rate, "tariff_rate"),
        commission_rate=_rate(data.commission_rate, "commission_rate"),
        repurchasable=bool(data.repurchasable),
    )
    session.add(category)
    session.flush()
    return category


def get_category(session: Session, category_id: str) -> Category:
    """The category a client names by its id, as stored or in any look-alike form (`stored_key`)."""
    return get_or_404(session, Category, stored_key(session, Category, category_id), "category")


def update_category_rates(
    session: Session, category_id: str, **rates: Decimal
) -> tuple[Category, dict[str, Decimal]]:
    """Change any of vat_rate, consumption_tax_rate, tariff_rate, commission_rate (new orders only).
    Returns the category and the rates it replaced, read under the row's lock (the audit's `old`: read
    before it, changes at once all named the same old rate)."""
    allowed = {"vat_rate", "consumption_tax_rate", "tariff_rate", "commission_rate"}
    if unknown := set(rates) - allowed:
        raise ValidationError(f"unknown rate fields {sorted(unknown)}", code="invalid_field")
    category = locked_or_404(session, Category, category_id, "category", key_share=True)
    old = {name: getattr(category, name) for name in rates}
    for name, value in rates.items():
        setattr(category, name, _rate(value, name))
    session.flush()
    return category, old


def category_subtree(session: Session, category_id: str) -> set[str]:
    """The category and all its descendants (trees are small: one query, walked in memory)."""
    get_or_404(session, Category, category_id, "category")
    children: dict[str | None, list[str]] = {}
    for cid, parent in session.execute(select(Category.category_id, Category.parent_id)):
        children.setdefault(parent, []).append(cid)
    found, stack = set(), [category_id]
    while stack:
        node = stack.pop()
        if node not in found:
            found.add(node)
            stack.extend(children.get(node, ()))
    return found


def category_paths(session: Session) -> dict[str, tuple[str, ...]]:
    """For every category, its ancestors from the root down to itself (one query, walked in memory)."""
    rows = session.execute(select(Category.category_id, Category.parent_id))
    parents = {cid: parent for cid, parent in rows}
    paths: dict[str, tuple[str, ...]] = {}
    for start in parents:
        chain, node = [], start
        while node is not None and node not in paths:
            if len(chain) > len(parents):
                raise ValidationError("category tree has a cycle", code="category_cycle")
            chain.append(node)
            node = parents[node]
        prefix = paths[node] if node is not None else ()
        for cid in reversed(chain):
            prefix = prefix + (cid,)
            paths[cid] = prefix
    return paths


def list_categories(session: Session, *, parent_id: str | None = None, limit: int = 500, offset: int = 0):
    stmt = select(Category).order_by(Category.category_id)
    if parent_id is not None:
        stmt = stmt.where(Category.parent_id == parent_id)
    return paginate(session, stmt, limit=limit, offset=offset)


def leaf_categories(session: Session, *, limit: int = 500) -> list[Category]:
    """The categories a product may be published in (create_product refuses the others), by name."""
    child = aliased(Category)
    stmt = select(Category).where(~exists().where(child.parent_id == Category.category_id))
    return list(session.scalars(stmt.order_by(Category.name, Category.category_id).limit(limit)))


@dataclass(frozen=True)
class ProductInput:
    sku: str
    merchant_id: str
    title: str
    category_id: str
    brand: str
    origin_country: str
    price: Decimal | str
    fulfillment: str
    self_operated: bool = False
    cost_price: Decimal | str | None = None
    stock: dict[str, int] = field(default_factory=dict)
    product_id: str | None = None


#: Units at one location: far above any real warehouse, far below an integer column's range.
MAX_STOCK_UNITS = 10_000_000


def _quantity(value: int, field_name: str = "quantity") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STOCK_UNITS:
        raise ValidationError(
            f"{field_name} must be an integer in 0..{MAX_STOCK_UNITS}", code="invalid_quantity"
        )
    return value


def create_product(session: Session, data: ProductInput) -> Product:
    """Add a listed product. The merchant must exist, not be rejected, hold the brand's authorization and
    use the SKU for none of its products (another merchant's SKU is free: a SKU is the merchant's code)."""
    price = to_money(data.price, field="price")
    if price <= 0:
        raise ValidationError("price must be positive", code="invalid_price")
    cost = None if data.cost_price is None else to_money(data.cost_price, field="cost_price")
    if cost is not None and cost < 0:
        raise ValidationError("cost_price must be >= 0", code="invalid_price")
    if data.self_operated and cost is None:
        raise ValidationError("self-operated products need a cost_price", code="missing_cost_price")
    if data.fulfillment not in FULFILLMENT_MODES:
        raise ValidationError(f"fulfillment must be one of {FULFILLMENT_MODES}", code="invalid_fulfillment")
    merchant = get_or_404(session, Merchant, stored_key(session, Merchant, data.merchant_id), "merchant")
    if merchant.status == "rejected":
        raise ValidationError(f"merchant {merchant.merchant_id!r} was rejected", code="merchant_rejected")
    brand = required_text(data.brand, "brand", 120)
    if brand not in {b.brand for b in merchant.brands}:
        raise ValidationError(
            f"merchant {merchant.merchant_id!r} holds no authorization for brand {brand!r}",
            code="brand_not_authorized",
        )
    category_id = get_category(session, data.category_id).category_id  # `ｆｏｏｄ` names `food`
    if session.scalar(select(exists().where(Category.parent_id == category_id))):
        raise ValidationError("products belong to leaf categories", code="category_not_leaf")
    sku = required_text(data.sku, "sku", 64)
    mine = exists().where(Product.merchant_id == merchant.merchant_id, Product.sku == sku)
    if session.scalar(select(mine)):
        raise Conflict(f"merchant {merchant.merchant_id!r} already uses sku {sku!r}", code="duplicate_sku")
    product_id = chosen_id(
        session,
        data.product_id or new_id("p"),
        Product.product_id,
        "product_id",
        seen_by(merchant.merchant_id),
    )
    if session.get(Product, product_id) is not None:
        raise Conflict(f"product {product_id!r} already exists", code="duplicate_product")
    product = Product(
        product_id=product_id,
        sku=sku,
        merchant_id=merchant.merchant_id,
        title=required_text(data.title, "title", 300),
        category_id=category_id,
        brand=brand,
        origin_country=country_code(data.origin_country, "origin_country"),
        price=price,
        cost_price=cost,
        fulfillment=data.fulfillment,
        self_operated=bool(data.self_operated),
        status="listed",
    )
    session.add(product)
    stocked = set()
    for location, qty in data.stock.items():
        location = register_location(
            session, required_text(location, "location", 64), product.fulfillment, product.merchant_id
        )
        if location in stocked:  # `wh1` and `ｗｈ１`: one location, one stock row
            raise ValidationError(f"location {location!r} is named twice", code="duplicate_location")
        stocked.add(location)
        session.add(Stock(product=product, location=location, quantity=_quantity(qty)))
    session.flush()
    return product


def update_product(
    session: Session,
    product_id: str,
    *,
    title: str | None = None,
    price: Decimal | str | None = None,
    cost_price: Decimal | str | None = None,
    status: str | None = None,
) -> tuple[Product, Decimal]:
    """Change the product; returns it and its price before, read under the row's lock (the audit's `old`:
    read before it, changes at once all named the same old price)."""
    product = locked_or_404(session, Product, product_id, "product", key_share=True)
    old_price = product.price
    if title is not None:
        product.title = required_text(title, "title", 300)
    if price is not None:
        new_price = to_money(price, field="price")
        if new_price <= 0:
            raise ValidationError("price must be positive", code="invalid_price")
        product.price = new_price
    if cost_price is not None:
        cost = to_money(cost_price, field="cost_price")
        if cost < 0:
            raise ValidationError("cost_price must be >= 0", code="invalid_price")
        product.cost_price = cost
    if status is not None:
        if status not in LISTING_STATUSES:
            raise ValidationError(f"status must be one of {LISTING_STATUSES}", code="invalid_status")
        product.status = status
    session.flush()
    return product, old_price


def register_location(session: Session, location: str, mode: str, merchant_id: str) -> str:
    """The warehouse a merchant's stock location names: one it may use (`usable_by`), else the merchant's
    own location, registered on first use for the product's mode and owned by it. Another merchant's own
    location is refused before its mode is compared, so the refusal tells nothing of what it holds.
    Cross-border rule: bonded goods are held only in bonded warehouses and direct-mail goods only abroad,
    so a warehouse holds goods of one mode. A location is named as ids are (`stored_key`: `ｗｈ１` is
    `wh1`) and a new one's name is a chosen id (`chosen_id`): `x/y` was registered, and no URL reached it
    again; Cyrillic `НН-1` beside `HH-1` was a second location that reads the same. The refusal names
    the stored look-alike only when the merchant may use it (another's own location is named to no one)."""
    location = stored_key(session, Warehouse, location)
    if session.get(Warehouse, location) is None:
        location = chosen_id(session, location, Warehouse.warehouse_id, "location", usable_by(merchant_id))
    insert_ignore(
        session,
        Warehouse.__table__,
        [{"warehouse_id": location, "name": location, "mode": mode, "owner_merchant_id": merchant_id}],
        ["warehouse_id"],
    )
    # under a share lock (PostgreSQL): an admin assigning the owner meanwhile (`set_location_owner`,
    # FOR UPDATE) is waited for and seen, instead of stock landing at what is then another's location
    held, usable = session.execute(
        select(Warehouse.mode, usable_by(merchant_id))
        .where(Warehouse.warehouse_id == location)
        .with_for_update(read=True, of=Warehouse)
    ).one()
    if not usable:
        raise Forbidden(f"location {location!r} is another merchant's own", code="location_forbidden")
    if held != mode:
        raise ValidationError(f"warehouse {location!r} holds {held} goods, not {mode}", code="warehouse_mode")
    return location


def set_stock(session: Session, product_id: str, location: str, quantity: int) -> Stock:
    """Set on-hand units at a location; refused below the units already reserved by unpaid orders."""
    product = get_or_404(session, Product, product_id, "product")
    quantity = _quantity(quantity)
    location = register_location(
        session, required_text(location, "location", 64), product.fulfillment, product.merchant_id
    )
    row = session.scalar(select(Stock).where(Stock.product_id == product_id, Stock.location == location))
    if row is None:
        row = Stock(product_id=product_id, location=location, quantity=quantity, reserved=0)
        session.add(row)
        session.flush()
        return row
    done = session.execute(
        update(Stock.__table__)
        .where(Stock.id == row.id, Stock.reserved <= quantity)
        .values(quantity=quantity)
    ).rowcount
    if done != 1:
        raise Conflict(f"{location}: {quantity} units is below the reserved units", code="below_reserved")
    session.refresh(row)
    return row


def get_product(session: Session, product_id: str) -> Product:
    """The product a client names by its id, as stored or in any look-alike form (`stored_key`)."""
    return get_or_404(session, Product, stored_key(session, Product, product_id), "product")


def list_products(
    session: Session,
    *,
    merchant_id: str | None = None,
    category_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Product]:
    """By id, each product's stock read for the whole page in one query (read product by product, a
    merchant's page of 60 took 63 statements: the list shows every product's stock)."""
    stmt = select(Product).options(selectinload(Product.stock)).order_by(Product.product_id)
    if merchant_id is not None:
        stmt = stmt.where(Product.merchant_id == merchant_id)
    if category_id is not None:
        stmt = stmt.where(Product.category_id.in_(category_subtree(session, category_id)))
    if status is not None:
        stmt = stmt.where(Product.status == status)
    return paginate(session, stmt, limit=limit, offset=offset)


def public_product() -> ColumnElement[bool]:
    """The one rule for a product anyone may see and buy: listed, from an approved (so not suspended)
    merchant."""
    approved = exists().where(Merchant.merchant_id == Product.merchant_id, Merchant.status == "approved")
    return and_(Product.status == "listed", approved)


def seen_by(merchant_id: str) -> ColumnElement[bool]:
    """The products a merchant may see: public ones (`public_product`) and its own, whatever their
    status (`serving.deps.ensure_product_visible` for the API's principals)."""
    return or_(Product.merchant_id == merchant_id, public_product())


def sellable_products_query(
    *, product_ids: Iterable[str] | None = None, in_stock: bool = False
) -> Select[tuple[Product]]:
    """Products that may be sold or recommended (`public_product`).

    `in_stock=True` also requires unreserved units at some location.
    """
    stmt = select(Product).where(public_product()).order_by(Product.product_id)
    if product_ids is not None:
        stmt = stmt.where(Product.product_id.in_(list(product_ids)))
    if in_stock:
        stmt = stmt.where(
            exists().where(Stock.product_id == Product.product_id, Stock.quantity > Stock.reserved)
        )
    return stmt


def sellable_products(
    session: Session, product_ids: Iterable[str] | None = None, *, in_stock: bool = False
) -> list[Product]:
    return list(session.scalars(sellable_products_query(product_ids=product_ids, in_stock=in_stock)))


def sellable_product_ids(session: Session, *, in_stock: bool = False) -> set[str]:
    """The set serving filters recommendations with."""
    stmt = sellable_products_query(in_stock=in_stock).with_only_columns(Product.product_id)
    return set(session.scalars(stmt))
