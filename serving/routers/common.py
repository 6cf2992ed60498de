"""Helpers shared by the routers: id and paging parameters, the in-memory catalog, downloads."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import HTTPException, Path, Query, status

from serving.catalog import CatalogSnapshot
from serving.schemas.base import PLAIN_INT
from serving.state import ServingState

MAX_N = 100
# Database integer keys: bounded so a huge id is a 422, not a driver overflow.
IntId = Annotated[int, Path(ge=1, le=2**31 - 1), PLAIN_INT]
# Every list endpoint pages the same way: limit/offset query parameters, `PageOut` responses.
PageLimit = Annotated[int, Query(ge=1, le=MAX_N, description="Items per page."), PLAIN_INT]
PageOffset = Annotated[int, Query(ge=0, le=100_000, description="Items to skip."), PLAIN_INT]


def catalog_or_503(state: ServingState) -> CatalogSnapshot:
    catalog = state.catalog.current
    if catalog is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "catalog not loaded yet")
    return catalog


def card(catalog: CatalogSnapshot, pos: int) -> dict:
    return {
        "product_id": catalog.product_ids[pos],
        "title": catalog.titles[pos],
        "merchant_id": catalog.merchant_ids[pos],
        "category_id": catalog.category_ids[pos],
        "origin_country": catalog.origins[pos],
        "price": catalog.prices[pos],
        "fulfillment": "bonded" if catalog.bonded[pos] else "direct_mail",
    }


def attachment(filename: str) -> str:
    """The Content-Disposition of a download named `filename`, all ASCII: a quoted name when it needs no
    escaping, else RFC 6266's `filename*` (UTF-8, percent-encoded). Names hold chosen ids, which may be
    Chinese (not Latin-1, the only text a header carries: a 500) or hold a `"` (closing the quoted name,
    the rest read as parameters of its own)."""
    encoded = quote(filename, safe="")
    if encoded == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{encoded}"
