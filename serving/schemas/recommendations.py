"""Response shapes of the storefront's recommendation, similar-items and ranking endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from commerce.catalog import Fulfillment
from serving.schemas.base import PLAIN_INT


class RecommendationQuery(BaseModel):
    """Query parameters of the recommendations endpoint."""

    n: Annotated[int, PLAIN_INT] = Field(default=10, ge=1, le=100, description="Products on the page.")
    category: str | None = Field(default=None, description="Only this category and its sub-categories.")
    fulfillment: Fulfillment | None = Field(default=None, description="`bonded`: fast-delivery goods only.")
    context: Literal["home", "cart", "product"] = "home"
    product_id: list[str] | None = Field(
        default=None, max_length=100, description="Context products (product page or cart)."
    )
    session_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{16,64}$",
        description="The shopper's live visit (home context): its items are blended into the page.",
    )


class ProductCard(BaseModel):
    """What a storefront needs to draw a product tile."""

    product_id: str
    title: str
    merchant_id: str
    category_id: str
    origin_country: str
    price: Decimal = Field(description="CNY, exact")
    fulfillment: Fulfillment


class RecommendedProduct(ProductCard):
    rank: int = Field(ge=1)
    score: float
    reason: str = Field(
        description="`MODEL:new` or `MODEL:repeat` (the shopper bought it before), `MODEL:similar`,"
        " `popularity`, `history` (buy again, unscored) or `sponsored`."
    )
    sponsored: bool = Field(description="A paid placement; shown only at fixed, flagged positions.")


class ModelInfo(BaseModel):
    name: str = Field(description="The recommender that served this page, or `popularity`.")
    registered_name: str
    alias: str = Field(description="The registry alias served: the champion's, or an experiment variant's.")
    version: str | None
    fallback: bool = Field(description="True when no model could be loaded and popularity answered.")
    fallback_reason: str | None = None
    alias_fallback_reason: str | None = Field(
        default=None,
        description="Set when the shopper's experiment variant asked for an alias that could not be "
        "served: the champion answered instead (and no exposure was logged).",
    )
    source: Literal["online", "precomputed"] = Field(
        default="online",
        description="Where the scores came from: `precomputed` by `crosscart batch-score` for the model "
        "version served, or scored `online` (no precomputed list for this shopper, version or page).",
    )


class SessionInfo(BaseModel):
    """What the live session contributed to a page."""

    session_id: str
    model: str = Field(description="The session model that ranked from the visit, or `popularity`.")
    version: str | None = Field(description="Its registry version (None when no session model is served).")
    items: list[str] = Field(description="The visit's products that drove the page, oldest first.")
    blend_weight: float | None = Field(
        default=None, description="Long-term model's share when it re-ranked the visit's candidates."
    )


class RecommendationPage(BaseModel):
    shopper_id: str
    context: Literal["home", "cart", "product"]
    items: list[RecommendedProduct]
    model: ModelInfo
    experiments: dict[str, str] = Field(description="Running experiment -> this shopper's variant.")
    session: SessionInfo | None = Field(default=None, description="Set when a live session was blended in.")


class BuyAgainQuery(BaseModel):
    """Query parameters of the buy-again endpoint."""

    n: Annotated[int, PLAIN_INT] = Field(default=10, ge=1, le=100, description="Products in the list.")
    category: str | None = Field(default=None, description="Only this category and its sub-categories.")
    fulfillment: Literal["bonded", "direct_mail"] | None = None


class BuyAgainPage(BaseModel):
    """The shopper's own repurchasable past purchases, most needed first."""

    shopper_id: str
    items: list[RecommendedProduct]
    model: ModelInfo


class SimilarPage(BaseModel):
    product_id: str
    items: list[RecommendedProduct]
    model: ModelInfo


class RankedProduct(ProductCard):
    rank: int = Field(ge=1)
    value: float = Field(description="Units sold or weighted popularity over the window.")


class RankingPeriod(BaseModel):
    """The time span a ranking counted: `window` said only its name, so a client could not tell which
    days a "7d" best-seller list covered (it ends at the catalog's last reload, not at the request)."""

    start: datetime | None = Field(description="Inclusive; null for window=all (every event up to `end`).")
    end: datetime = Field(description="When the counts were taken: the catalog's last reload (UTC).")
    days: int | None = Field(description="The window's length in days; null for window=all.")


class RankingPage(BaseModel):
    by: Literal["sales", "popularity"]
    window: Literal["1d", "7d", "30d", "all"]
    items: list[RankedProduct]
    period: RankingPeriod
