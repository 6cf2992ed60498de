"""Experiment management shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from commerce.experiments import INFERENCES, MAX_VARIANT_WEIGHT, STATUSES
from serving.schemas.base import RequestModel

ExperimentStatus = Literal[STATUSES]  # both defined once, in commerce.experiments
Inference = Literal[INFERENCES]


class VariantIn(RequestModel):
    name: str = Field(min_length=1, max_length=64)
    weight: float = Field(gt=0, le=MAX_VARIANT_WEIGHT, allow_inf_nan=False)
    config: dict[str, Any] | None = Field(
        default=None,
        description='What the variant changes, e.g. {"model_alias": "challenger"}, '
        '{"interleave": ["champion", "challenger"]} or {"explore": 0.05}.',
    )

    @field_validator("config")
    @classmethod
    def _page_config(cls, config: dict[str, Any] | None) -> dict[str, Any] | None:
        from serving.ab import check_variant_config

        return check_variant_config(config)
        pair = config.get("interleave")
        if pair is not None and not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(a, str) and a for a in pair)
            and pair[0] != pair[1]
        ):
            raise ValueError("interleave must name two different model aliases")
        eps = config.get("explore")
        if eps is not None and not (isinstance(eps, int | float) and 0 < eps <= 1):
            raise ValueError("explore must be a probability in (0, 1]")
        if pair is not None and (eps is not None or config.get("model_alias")):
            raise ValueError("an interleaving variant takes no model_alias or explore")
        return config


class ExperimentCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    variants: list[VariantIn] = Field(min_length=2, max_length=20)
    layer: str | None = Field(default=None, min_length=1, max_length=100)
    traffic: float = Field(default=1.0, gt=0, le=1)
    description: str = Field(default="", max_length=500)
    primary_metric: str = Field(default="conversion", min_length=1, max_length=64)
    planned_units_per_variant: int | None = Field(default=None, ge=1, le=2**31 - 1)
    inference: Inference = Field(
        default="fixed", description="How results may be read, fixed before the start."
    )


class VariantOut(BaseModel):
    name: str
    weight: float
    config: dict[str, Any] | None


class ExperimentOut(BaseModel):
    name: str
    description: str
    status: ExperimentStatus
    layer: str | None
    traffic_start: float
    traffic_end: float
    primary_metric: str
    planned_units_per_variant: int | None
    inference: Inference
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


class ExperimentResults(BaseModel):
    """The analysis of a running or stopped experiment from the logged exposures and events."""

    experiment: str
    method: Inference = Field(description="The inference in force.")
    report: dict[str, Any] = Field(description="Per-metric lifts, CIs, corrected p-values, SRM, status.")
    sequential: dict[str, Any] = Field(description="The primary metric at every daily look, and the verdict.")
    interleaving: dict[str, Any] | None = Field(
        default=None, description="Team preference with its CI (interleaving variants)."
    )
    segments: dict[str, Any] | None = Field(
        default=None,
        description="Lift by segment (new vs returning, bonded vs direct mail, price level), corrected "
        "across every cell.",
    )
    offpolicy: dict[str, Any] | None = Field(
        default=None,
        description="IPS / SNIPS / DR click and purchase rate of `candidate` (exploration logs).",
    )
