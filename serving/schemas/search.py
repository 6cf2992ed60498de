"""Request and response bodies of search, sponsored clicks and keyword campaigns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from serving.schemas.base import RequestModel
from serving.schemas.recommendations import ProductCard

Money = Decimal


class QueryUnderstanding(BaseModel):
    terms: list[str] = Field(description="Words searched for, after typo correction (origin words removed).")
    origin: str | None = Field(description="Origin filter recognised in the query (e.g. 日本 -> JP).")
    brand: str | None = Field(description="Brand named in the query (boosted).")
    category_id: str | None = Field(description="Leaf category named in the query (boosted).")
    corrections: dict[str, str] = Field(description="Misspelt word -> the indexed word used instead.")


class SearchItem(ProductCard):
    rank: int = Field(ge=1)
    score: float
    sponsored: Literal[False] = False


class SponsoredItem(ProductCard):
    slot: int = Field(ge=1, description="Sponsored slot (1 = best).")
    position: int = Field(ge=1, description="Where the storefront shows it among the organic results.")
    label: str = Field(description="The mark the storefront must show, e.g. Sponsored.")
    sponsored: Literal[True] = True
    impression_token: str = Field(description="Send to POST /v1/search/clicks when the shopper clicks.")


class SearchOut(BaseModel):
    query: str
    understood: QueryUnderstanding
    items: list[SearchItem]
    sponsored: list[SponsoredItem]
    total: int
    limit: int
    offset: int
    model_version: str = Field(description="Organic ranking: `bm25` or the learned ranker's version.")


class ClickIn(RequestModel):
    token: str = Field(min_length=1, max_length=2000)


class ClickOut(BaseModel):
    product_id: str
    campaign_id: str
    charged: bool
    replay: bool = Field(description="The token had been used before: nothing recorded or charged.")


class KeywordIn(RequestModel):
    keyword: str = Field(min_length=1, max_length=200)
    match_type: Literal["exact", "phrase", "broad"]
    bid: Decimal = Field(gt=0, le=10_000, decimal_places=2, description="CNY per click")


class KeywordOut(BaseModel):
    keyword_id: int
    keyword: str
    match_type: str
    bid: Money
    status: str


class KeywordPatch(RequestModel):
    bid: Decimal | None = Field(default=None, gt=0, le=10_000, decimal_places=2)
    status: Literal["active", "paused"] | None = None


class KeywordCampaignIn(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    daily_budget: Decimal = Field(gt=0, le=10_000_000, decimal_places=2)
    product_ids: list[str] = Field(min_length=1, max_length=500)
    keywords: list[KeywordIn] = Field(default_factory=list, max_length=500)


class KeywordCampaignPatch(RequestModel):
    daily_budget: Decimal | None = Field(default=None, gt=0, le=10_000_000, decimal_places=2)
    status: Literal["active", "paused", "ended"] | None = None


class KeywordCampaignOut(BaseModel):
    campaign_id: str
    merchant_id: str
    name: str
    daily_budget: Money
    status: str
    created_at: datetime
    product_ids: list[str]
    keywords: list[KeywordOut]


class KeywordCampaignReport(BaseModel):
    campaign_id: str
    start: datetime
    end: datetime
    impressions: int
    clicks: int
    ctr: float | None
    spend: Money
    attributed_orders: int
    attributed_revenue: Money
    roas: float | None
