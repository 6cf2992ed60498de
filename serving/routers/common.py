"""Helpers shared by the routers that read the in-memory catalog."""

from __future__ import annotations

from typing import Annotated

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
