"""Campaign shapes. Money (budget) is Decimal; plan and report figures are analytics floats."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from commerce.campaigns import CAMPAIGN_STATUSES, CHANNELS
from serving.schemas.base import Instant, RequestModel

Channel = Literal[CHANNELS]  # defined once, in commerce.campaigns
CampaignStatus = Literal[CAMPAIGN_STATUSES]
Probability = Field(ge=0, le=1, allow_inf_nan=False)
Spend = Field(ge=0, le=1e9, allow_inf_nan=False)


class CampaignCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    budget: Decimal = Field(
        gt=0, max_digits=12, decimal_places=2, description="Cap on expected coupon cost, CNY."
    )
    starts_at: Instant
    ends_at: Instant
    control_share: Decimal = Field(default=Decimal("0.1"), ge=0, lt=1, max_digits=5, decimal_places=4)


class CampaignOut(BaseModel):
    campaign_id: str
    name: str
    channel: Channel
    status: CampaignStatus
    budget: Decimal
    spent: Decimal = Field(
        description="What the campaign's coupons have given away so far (not cancelled or refunded), CNY; "
        "never more than the budget."
    )
    control_share: Decimal
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None


class Candidate(RequestModel):
    """One (shopper, coupon) option with predicted outcomes, e.g. from the uplift model."""

    shopper_id: str = Field(min_length=1, max_length=64)
    coupon_id: str = Field(min_length=1, max_length=64)
    p_control: float = Probability
    p_treated: float = Probability
    spend_control: float = Spend
    spend_treated: float = Spend
    p_redeem: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)


class PlanIn(RequestModel):
    """Plan the database's shoppers (optionally one region or segment) with the served uplift model, or
    give `candidates`: your own predicted effects per (shopper, coupon)."""

    candidates: list[Candidate] | None = Field(default=None, min_length=1, max_length=100_000)
    region: str | None = Field(default=None, min_length=1, max_length=64)
    segment: str | None = Field(default=None, min_length=1, max_length=64)
    margin_rate: float = Field(default=0.3, gt=0, le=1)
    method: Literal["lagrangian", "greedy"] = "lagrangian"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_source(self) -> PlanIn:
        if self.candidates is not None and (self.region is not None or self.segment is not None):
            raise ValueError("region and segment filter the database's shoppers; not with candidates")
        return self


class PolicyValueOut(BaseModel):
    """The plan's incremental profit (CNY) as its model forecasts it and as the stored randomised history
    estimates it (inverse propensity and doubly robust, intervals at `confidence`). Estimates are null,
    with `reason`, when no past campaign drew the plan's coupon terms and the holdout at random."""

    confidence: float
    model_profit: float = Field(description="The model's forecast of the whole plan.")
    model_low: float | None = Field(description="The forecast's interval: null, the models give none.")
    model_high: float | None
    model_profit_estimated: float | None = Field(
        description="The forecast of the treated shoppers the estimates cover (coupons with history)."
    )
    ips: float | None
    ips_low: float | None
    ips_high: float | None
    dr: float | None
    dr_low: float | None
    dr_high: float | None
    rows_used: int = Field(description="Logged randomised rows in the estimates, one per shopper.")
    rows_without_propensity: int = Field(
        description="Rows of the plan's shoppers left out: no logged probabilities."
    )
    rows_without_support: int = Field(
        description="Rows left out: the plan's terms or the holdout impossible there."
    )
    treated: int
    treated_estimated: int
    coupons_without_history: list[str] = Field(
        description="Plan coupons whose terms have too little history."
    )
    disagreement: bool = Field(description="The forecast lies outside the doubly robust interval.")
    message: str
    reason: str | None = Field(description="Why the estimates are null.")


class PlanOut(BaseModel):
    campaign_id: str
    audience_size: int
    summary: dict[str, Any] = Field(description="Expected incremental conversions, revenue, cost, ROI...")
    curve: list[dict[str, float]] = Field(description="Expected profit versus audience size.")
    policy_value: PolicyValueOut


class CampaignReport(BaseModel):
    """Figures that are undefined for the data (e.g. ROI with zero cost) are null."""

    n_treated: int
    n_holdout: int
    conversion_rate_treated: float | None
    conversion_rate_holdout: float | None
    incremental_conversion_rate: float | None
    incremental_conversion_rate_ci: tuple[float | None, float | None]
    incremental_conversions: float | None
    incremental_revenue_per_shopper: float | None
    incremental_revenue_per_shopper_ci: tuple[float | None, float | None]
    incremental_revenue: float | None
    incremental_revenue_ci: tuple[float | None, float | None]
    cost: float | None
    roi: float | None
    roi_ci: tuple[float | None, float | None]
    confidence: float | None
