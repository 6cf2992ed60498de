"""Online experiment tables: layers, experiments, variants, exposures (use cases:
`commerce.services.experiments`).

An experiment has weighted variants and a salt; a layer groups mutually exclusive experiments, each
owning a disjoint slice `[traffic_start, traffic_end)` of the layer's hash space. Assignment itself is
pure and lives in `experiments.ab.assignment`; `Experiment.as_config()` is the plain dict it reads, so
API replicas can cache it (or share it through Redis) and assign without touching the database.
Exposures record the first time a unit was actually shown its variant: analysis starts there.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from commerce.db import Base
from commerce.sqltypes import UTCDateTime, skeleton_of, str_enum, utcnow

STATUSES = ("draft", "running", "stopped")
#: A variant's largest weight (the API's and the command line's): weights are relative, and an infinite
#: one (`crosscart experiment create -v a=inf`) made its split inf / inf.
MAX_VARIANT_WEIGHT = 1e6
#: How results may be read: fixed horizon, or peeking-safe (experiments.ab.sequential). Chosen up front.
INFERENCES = ("fixed", "msprt", "group-sequential")


class ExperimentLayer(Base):
    """A hash space shared by mutually exclusive experiments (a unit is in at most one of them)."""

    __tablename__ = "experiment_layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_skeleton: Mapped[str] = skeleton_of("name")
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_skeleton: Mapped[str] = skeleton_of("name")
    description: Mapped[str] = mapped_column(String(500), default="")
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(str_enum("experiment_status", STATUSES), default="draft")
    layer_id: Mapped[int | None] = mapped_column(ForeignKey("experiment_layers.id"), default=None)
    traffic_start: Mapped[float] = mapped_column(Float, default=0.0)
    traffic_end: Mapped[float] = mapped_column(Float, default=1.0)
    primary_metric: Mapped[str] = mapped_column(String(64), default="conversion")
    planned_units_per_variant: Mapped[int | None] = mapped_column(Integer, default=None)
    inference: Mapped[str] = mapped_column(String(32), default="fixed")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    layer: Mapped[ExperimentLayer | None] = relationship(lazy="joined")
    variants: Mapped[list[ExperimentVariant]] = relationship(
        back_populates="experiment",
        order_by="ExperimentVariant.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )

    def as_config(self) -> dict:
        """The plain, JSON-ready dict `ExperimentSpec.from_config` reads."""
        return {
            "name": self.name,
            "salt": self.salt,
            "status": self.status,
            "layer": self.layer.name if self.layer else None,
            "traffic_salt": self.layer.salt if self.layer else "",
            "traffic_start": self.traffic_start,
            "traffic_end": self.traffic_end,
            "primary_metric": self.primary_metric,
            "planned_units_per_variant": self.planned_units_per_variant,
            "inference": self.inference,
            "variants": [
                {"name": v.name, "weight": v.weight, "config": v.config or {}} for v in self.variants
            ],
        }


class ExperimentVariant(Base):
    __tablename__ = "experiment_variants"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    # What the variant means to the caller, e.g. {"model_alias": "challenger"} or {"coupon_id": "C1"}.
    config: Mapped[dict | None] = mapped_column(JSON, default=None)

    experiment: Mapped[Experiment] = relationship(back_populates="variants")


class ExperimentExposure(Base):
    """First time a unit was shown its variant (one row per experiment and unit)."""

    __tablename__ = "experiment_exposures"
    __table_args__ = (UniqueConstraint("experiment_id", "unit_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    variant: Mapped[str] = mapped_column(String(64))
    unit_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExperimentImpression(Base):
    """One product shown on one page of an interleaving or exploration variant: its slot, the team
    (ranker alias) that placed it when interleaved, and its logged propensity when explored. A page's
    slot is stored once (`record_impressions` ignores repeats): a writer that retries a batch whose
    COMMIT was kept but not acknowledged must not log the page twice."""

    __tablename__ = "experiment_impressions"
    __table_args__ = (UniqueConstraint("experiment_id", "page_id", "slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    variant: Mapped[str] = mapped_column(String(64))
    unit_id: Mapped[str] = mapped_column(String(128))
    page_id: Mapped[str] = mapped_column(String(32))
    slot: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(100), default=None)
    propensity: Mapped[float | None] = mapped_column(Float, default=None)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


TABLES = [
    t.__table__
    for t in (ExperimentLayer, Experiment, ExperimentVariant, ExperimentExposure, ExperimentImpression)
]
