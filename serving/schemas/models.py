"""Registered model shapes (the registry as `training.registry_view` reads it)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from serving.schemas.base import RequestModel


class ModelVersionOut(BaseModel):
    name: str
    version: str
    run_id: str | None
    aliases: list[str]
    model: str = Field(description="Estimator family (e.g. als, popularity), when tagged.")
    metrics: dict[str, float] = Field(description="Offline metrics of the version's training run.")
    plots: list[str] = Field(description="Plot artifacts of the run, under plots/.")


class RegisteredModelOut(BaseModel):
    name: str
    role: str = Field(description="recommender or uplift: which the API serves it as.")
    versions: list[ModelVersionOut]


class AliasIn(RequestModel):
    version: str = Field(min_length=1, max_length=20, pattern=r"^\d+$")
