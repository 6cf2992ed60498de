"""Experiment management shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.schemas.base import RequestModel


class VariantIn(RequestModel):
    name: str = Field(min_length=1, max_length=64)
    weight: float = Field(gt=0, le=1e6, allow_inf_nan=False)
    config: dict[str, Any] | None = Field(
        default=None, description='What the variant changes, e.g. {"model_alias": "challenger"}.'
    )


class ExperimentCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    variants: list[VariantIn] = Field(min_length=2, max_length=20)
    layer: str | None = Field(default=None, min_length=1, max_length=100)
    traffic: float = Field(default=1.0, gt=0, le=1)
    description: str = Field(default="", max_length=500)
    primary_metric: str = Field(default="conversion", min_length=1, max_length=64)
    planned_units_per_variant: int | None = Field(default=None, ge=1, le=2**31 - 1)


class VariantOut(BaseModel):
    name: str
    weight: float
    config: dict[str, Any] | None


class ExperimentOut(BaseModel):
    name: str
    description: str
    status: Literal["draft", "running", "stopped"]
    layer: str | None
    traffic_start: float
    traffic_end: float
    primary_metric: str
    planned_units_per_variant: int | None
    variants: list[VariantOut]
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None


class ExposureIn(RequestModel):
    unit_id: str = Field(min_length=1, max_length=128, description="The shopper shown the variant.")
    variant: str = Field(min_length=1, max_length=64)


class ExposureLogged(BaseModel):
    first_exposure: bool


class ExposureSummary(BaseModel):
    experiment: str
    counts: dict[str, int]
    srm_p_value: float | None = Field(description="Chi-squared test against the planned weights.")
    srm_flag: bool = Field(description="Sample-ratio mismatch (p < 0.001): the split is broken.")
