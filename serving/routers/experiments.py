"""A/B experiments: management (data scientist, marketer, admin) over commerce.experiments, exposure
logging (storefront)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status

from commerce import experiments as store
from serving.deps import Experimenter, SessionDep, StateDep, Storefront, ensure_shopper
from serving.schemas.experiments import (
    ExperimentCreate,
    ExperimentOut,
    ExposureIn,
    ExposureLogged,
    ExposureSummary,
)

router = APIRouter(prefix="/experiments", tags=["experiments"])


def _out(exp: store.Experiment) -> ExperimentOut:
    return ExperimentOut(
        name=exp.name,
        description=exp.description,
        status=exp.status,
        layer=exp.layer.name if exp.layer else None,
        traffic_start=exp.traffic_start,
        traffic_end=exp.traffic_end,
        primary_metric=exp.primary_metric,
        planned_units_per_variant=exp.planned_units_per_variant,
        variants=[{"name": v.name, "weight": v.weight, "config": v.config} for v in exp.variants],
        created_at=exp.created_at,
        started_at=exp.started_at,
        stopped_at=exp.stopped_at,
    )


@router.get("", response_model=list[ExperimentOut])
def list_experiments(
    session: SessionDep, _: Experimenter, status: Literal["draft", "running", "stopped"] | None = None
) -> list[ExperimentOut]:
    return [_out(e) for e in store.list_experiments(session, status=status)]


@router.post("", response_model=ExperimentOut, status_code=status.HTTP_201_CREATED)
def create_experiment(body: ExperimentCreate, session: SessionDep, _: Experimenter) -> ExperimentOut:
    """A draft; in a layer it takes the lowest free traffic slice, so layered experiments never overlap."""
    exp = store.create_experiment(
        session,
        body.name,
        [(v.name, v.weight, v.config) for v in body.variants],
        layer=body.layer,
        traffic=body.traffic,
        description=body.description,
        primary_metric=body.primary_metric,
        planned_units_per_variant=body.planned_units_per_variant,
    )
    return _out(exp)


@router.get("/{name}", response_model=ExperimentOut)
def get_experiment(name: str, session: SessionDep, _: Experimenter) -> ExperimentOut:
    return _out(store.get_experiment(session, name))


@router.post("/{name}/start", response_model=ExperimentOut)
def start_experiment(name: str, session: SessionDep, state: StateDep, _: Experimenter) -> ExperimentOut:
    """Start now; recommendation responses report its variant once this replica's snapshot refreshes."""
    exp = _out(store.start_experiment(session, name))
    session.commit()
    state.experiments.refresh()
    return exp


@router.post("/{name}/stop", response_model=ExperimentOut)
def stop_experiment(name: str, session: SessionDep, state: StateDep, _: Experimenter) -> ExperimentOut:
    exp = _out(store.stop_experiment(session, name))
    session.commit()
    state.experiments.refresh()
    return exp


@router.post("/{name}/exposures", response_model=ExposureLogged)
def log_exposure(name: str, body: ExposureIn, session: SessionDep, principal: Storefront) -> ExposureLogged:
    """The storefront reports that it actually showed a variant to a shopper (logged once per shopper)."""
    ensure_shopper(principal, body.unit_id)
    return ExposureLogged(first_exposure=store.record_exposure(session, name, body.variant, body.unit_id))


@router.get("/{name}/exposures", response_model=ExposureSummary)
def exposure_summary(name: str, session: SessionDep, _: Experimenter) -> ExposureSummary:
    """Exposed shoppers per variant with the sample-ratio-mismatch check."""
    from experiments.ab.analysis import srm_check

    exp = store.get_experiment(session, name)
    counts = store.exposure_counts(session, name)
    srm = srm_check(counts, {v.name: v.weight for v in exp.variants}) if sum(counts.values()) else None
    return ExposureSummary(
        experiment=name,
        counts=counts,
        srm_p_value=None if srm is None else srm["p_value"],
        srm_flag=False if srm is None else srm["flagged"],
    )
