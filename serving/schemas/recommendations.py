"""Response shapes of the storefront's recommendation, similar-items and ranking endpoints."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from commerce.catalog import Fulfillment


class RecommendationQuery(BaseModel):
    """Query parameters of the recommendations endpoint."""

    n: int = Field(default=10, ge=1, le=100, description="Products on the page.")
    category: str | None = Field(default=None, description="Only this category and its sub-categories.")
    fulfillment: Fulfillment | None = Field(
        default=None, description="`bonded`: fast-delivery goods only."
    )
    context: Literal["home", "cart", "product"] = "home"
    product_id: list[str] | None = Field(
        default=None, max_length=100, description="Context products (product page or cart)."
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


class RecommendationPage(BaseModel):
    shopper_id: str
    context: Literal["home", "cart", "product"]
    items: list[RecommendedProduct]
    model: ModelInfo
    experiments: dict[str, str] = Field(description="Running experiment -> this shopper's variant.")


class BuyAgainQuery(BaseModel):
    """Query parameters of the buy-again endpoint."""

    n: int = Field(default=10, ge=1, le=100, description="Products in the list.")
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


class RankingPage(BaseModel):
    by: Literal["sales", "popularity"]
    window: Literal["1d", "7d", "30d", "all"]
    items: list[RankedProduct]
