"""Search documents from the marketplace database: the sellable products (commerce's one definition:
listed, approved merchant, units available), with their category path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.catalog import Category, Product
from commerce.search.index import SearchDocument, SearchIndex, sync
from commerce.services.catalog import category_paths, sellable_products_query


def load_documents(
    session: Session, *, product_ids: Iterable[str] | None = None, merchant_id: str | None = None
) -> Iterator[SearchDocument]:
    names = dict(session.execute(select(Category.category_id, Category.name)).all())
    paths = {cid: tuple(names[c] for c in path) for cid, path in category_paths(session).items()}
    stmt = sellable_products_query(product_ids=product_ids, in_stock=True).with_only_columns(
        Product.product_id,
        Product.title,
        Product.brand,
        Product.category_id,
        Product.origin_country,
        Product.merchant_id,
        Product.price,
        Product.fulfillment,
        Product.created_at,
        Product.self_operated,
    )
    if merchant_id is not None:
        stmt = stmt.where(Product.merchant_id == merchant_id)
    for pid, title, brand, cat, origin, merchant, price, fulfillment, created, self_op in session.execute(
        stmt
    ):
        yield SearchDocument(
            product_id=pid,
            title=title,
            brand=brand,
            category_id=cat,
            category_path=paths.get(cat, ()),
            origin=origin,
            merchant_id=merchant,
            price=str(price),
            fulfillment=fulfillment,
            created_at=created.isoformat() if created is not None else "",
            attributes=("bonded" if fulfillment == "bonded" else "direct mail",)
            + (("self operated",) if self_op else ()),
        )


def rebuild(index: SearchIndex, session: Session) -> dict[str, int]:
    """Make the index match every sellable product (the full build); what is re-indexed while it reads
    is left as written (`sync`'s `before`, read before `session` reads the catalog)."""
    index.ensure()
    return sync(index, load_documents(session), before=index.fingerprints())


def refresh_products(
    index: SearchIndex, session: Session, *, product_ids: Iterable[str] = (), merchant_id: str | None = None
) -> dict[str, int]:
    """Re-index some products after a write: those still sellable are rewritten, the others removed."""
    ids = list(product_ids)
    if merchant_id is not None:
        ids += list(session.scalars(select(Product.product_id).where(Product.merchant_id == merchant_id)))
    ids = sorted(set(ids))
    docs = list(load_documents(session, product_ids=ids)) if ids else []
    index.ensure()
    written = index.upsert(docs)
    removed = index.remove(set(ids) - {d.product_id for d in docs})
    return {"written": written, "removed": removed}
