"""Which merchant a merchant page (My shop, Shipments, Keyword ads) works on: a merchant key's own; for an
admin the one named (`?merchant=`, a form's `merchant_id`), and, none named yet, a page asking for its
id. The shop and keyword-ad views each resolved this, checked it and rendered their own picker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session

from commerce.services.merchants import get_merchant, list_merchants
from serving.console.auth import MerchantOnly
from serving.console.web import render
from serving.deps import SessionDep, ensure_merchant
from serving.security import Principal


def merchant_of(db: Session, principal: Principal, requested: str | None) -> str | None:
    """The merchant a merchant page works on: a merchant key's own; for an admin the one asked for, which
    must exist (404): an unknown id showed an empty shop, as if that merchant had no products. Its stored
    id, as the API's URLs read one (`?merchant=ｍ1` is m1: the shop of the spelling was empty). The API's
    object-level check (`ensure_merchant`) applies as on its own merchant routes."""
    merchant_id = principal.merchant_id or (requested or None)
    if merchant_id is not None:
        if not principal.merchant_id:
            merchant_id = get_merchant(db, merchant_id).merchant_id
        ensure_merchant(principal, merchant_id)
    return merchant_id


def merchant_query(principal: Principal, merchant_id: str) -> str:
    """The `?merchant=` an admin's links carry to stay on this merchant's pages; nothing for a merchant
    key, whose pages are always its own."""
    return "" if principal.merchant_id else "?" + urlencode({"merchant": merchant_id})


@dataclass(frozen=True)
class MerchantScope:
    """A merchant page's request: its database session, the principal and the merchant it works on (None:
    an admin who has not named one yet)."""

    db: Session
    principal: Principal
    merchant_id: str | None
    merchant_name: str | None = None

    @property
    def query(self) -> str:
        return "" if self.merchant_id is None else merchant_query(self.principal, self.merchant_id)


def merchant_scope(
    session: SessionDep, principal: MerchantOnly, merchant: str | None = None
) -> MerchantScope:
    """Sync: FastAPI runs it in the thread pool, as `merchant_of` reads the database."""
    merchant_id = merchant_of(session, principal, merchant)
    name = None if merchant_id is None else merchant_name(session, merchant_id)
    return MerchantScope(session, principal, merchant_id, name)


def merchant_name(db: Session, merchant_id: str) -> str:
    """What a merchant page calls its merchant (`_merchant.html`: the name, the id beside it); Shipments
    and Keyword ads showed only "M00002" where My shop named the store."""
    return get_merchant(db, merchant_id).name


MerchantPage = Annotated[MerchantScope, Depends(merchant_scope)]


#: Merchants the picker offers by name; past it, an id can still be typed.
PICKER_MERCHANTS = 500


async def merchant_picker(request: Request, title: str, db: Session) -> Response:
    """The page asking an admin which merchant, offering them by name (it asked for an id to type, and
    none was shown anywhere but the review page); its form comes back to the page asked for."""
    page = await run_in_threadpool(list_merchants, db, limit=PICKER_MERCHANTS)
    return await render(request, "merchant_picker.html", title=title, merchants=page.items)
