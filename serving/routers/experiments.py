"""A/B experiments: management (data scientist, marketer, admin) over commerce.experiments, exposure
logging (storefront)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from commerce.experiments import Experiment
from commerce.services import experiments as store
from commerce.services._util import lookup_name, stored_key
from commerce.shoppers import Shopper
from experiments.ab.assignment import ExperimentSpec, assign
from serving import ab
from serving.audit import audit
from serving.deps import Experimenter, SessionDep, StateDep, Storefront, ensure_shopper
from serving.routers.common import PageLimit, PageOffset
from serving.schemas.base import PageOut
from serving.schemas.experiments import (
    ExperimentCreate,
    ExperimentOut,
    ExperimentResults,
    ExperimentStatus,
    ExposureIn,
    ExposureLogged,
    ExposureSummary,
    Inference,
)

router = APIRouter(prefix="/experiments", tags=["experiments"])


def _out(exp: Experiment) -> ExperimentOut:
    return ExperimentOut(
        name=exp.name,
        description=exp.description,
        status=exp.status,
        layer=exp.layer.name if exp.layer else None,
        traffic_start=exp.traffic_start,
        traffic_end=exp.traffic_end,
        primary_metric=exp.primary_metric,
        planned_units_per_variant=exp.planned_units_per_variant,
        inference=exp.inference,
        variants=[{"name": v.name, "weight": v.weight, "config": v.config} for v in exp.variants],
        created_at=exp.created_at,
        started_at=exp.started_at,
        stopped_at=exp.stopped_at,
    )


@router.get("", response_model=PageOut[ExperimentOut])
def list_experiments(
    session: SessionDep,
    _: Experimenter,
    status: ExperimentStatus | None = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[ExperimentOut]:
    """Oldest first."""
    page = store.list_experiments(session, status=status, limit=limit, offset=offset)
    return PageOut(items=[_out(e) for e in page.items], total=page.total, limit=limit, offset=offset)


@router.post("", response_model=ExperimentOut, status_code=status.HTTP_201_CREATED)
def create_experiment(body: ExperimentCreate, session: SessionDep, principal: Experimenter) -> ExperimentOut:
    """A draft; in a layer it takes the lowest free traffic slice, so layered experiments never overlap.
    Audited (`experiment.created`, by id; the detail names it, its slice and its variants' configs: what
    a later start serves)."""
    exp = store.create_experiment(
        session,
        body.name,
        [(v.name, v.weight, v.config) for v in body.variants],
        layer=body.layer,
        traffic=body.traffic,
        description=body.description,
        primary_metric=body.primary_metric,
        planned_units_per_variant=body.planned_units_per_variant,
        inference=body.inference,
    )
    audit(session, principal, "experiment.created", "experiment", exp.id, **store.creation_detail(exp))
    return _out(exp)


@router.get("/{name}", response_model=ExperimentOut)
def get_experiment(name: str, session: SessionDep, _: Experimenter) -> ExperimentOut:
    return _out(store.get_experiment(session, name))


@router.post("/{name}/start", response_model=ExperimentOut)
def start_experiment(
    name: str, session: SessionDep, state: StateDep, principal: Experimenter
) -> ExperimentOut:
    """Start now; recommendation responses report its variant once this replica's snapshot refreshes.
    Audited (by id, the name in the detail), as stopping is: either changes what every shopper in its
    traffic is shown. 409 `too_many_experiments` past `MAX_RUNNING_EXPERIMENTS` running at once, 409
    `too_many_model_aliases` when the running experiments would serve more than `MAX_EXPERIMENT_ALIASES`
    aliases besides the champion (`serving.ab.start_experiment`, the one check)."""
    started = ab.start_experiment(session, name, state.settings.model_alias)
    audit(session, principal, "experiment.started", "experiment", started.id, name=started.name)
    exp = _out(started)
    session.commit()
    state.experiments.refresh()
    return exp


@router.post("/{name}/stop", response_model=ExperimentOut)
def stop_experiment(
    name: str, session: SessionDep, state: StateDep, principal: Experimenter
) -> ExperimentOut:
    stopped = store.stop_experiment(session, name)
    audit(session, principal, "experiment.stopped", "experiment", stopped.id, name=stopped.name)
    exp = _out(stopped)
    session.commit()
    state.experiments.refresh()
    return exp


@router.post("/{name}/exposures", response_model=ExposureLogged)
def log_exposure(name: str, body: ExposureIn, session: SessionDep, principal: Storefront) -> ExposureLogged:
    """The storefront reports that it actually showed a variant to a shopper (logged once per shopper).
    Only the variant the shopper is assigned: the first exposure logged is the one analysed, so a shopper
    key naming another (or a unit outside the experiment's traffic) would pick its own arm."""
    unit_id = stored_key(session, Shopper, body.unit_id)  # as `ShopperId`: `ｓ1` is s1, shown s1's variant
    ensure_shopper(principal, unit_id)
    exp = store.get_experiment(session, name)
    variant = lookup_name(body.variant)  # as `record_exposure` reads it
    if exp.status == "running":
        assigned = assign(ExperimentSpec.from_config(exp.as_config()), unit_id)
        if variant != assigned:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"unit {unit_id!r} is not assigned variant {variant!r} of {exp.name!r}",
            )
    return ExposureLogged(first_exposure=store.record_exposure(session, exp.name, variant, unit_id))


@router.get("/{name}/exposures", response_model=ExposureSummary)
def exposure_summary(name: str, session: SessionDep, _: Experimenter) -> ExposureSummary:
    """Exposed shoppers per variant with the sample-ratio-mismatch check."""
    from experiments.ab.analysis import srm_check

    exp = store.get_experiment(session, name)
    name = exp.name  # the stored name, whichever look-alike of it the path gave
    counts = store.exposure_counts(session, name)
    srm = srm_check(counts, {v.name: v.weight for v in exp.variants}) if sum(counts.values()) else None
    return ExposureSummary(
        experiment=name,
        counts=counts,
        srm_p_value=None if srm is None else srm["p_value"],
        srm_flag=False if srm is None else srm["flagged"],
    )


@router.get(
    "/{name}/results", response_model=ExperimentResults, responses={409: {"description": "no exposures yet"}}
)
def experiment_results(
    name: str,
    session: SessionDep,
    state: StateDep,
    _: Experimenter,
    method: Inference | None = None,
    candidate: str | None = None,
) -> ExperimentResults:
    """The analysis with the inference in force (the experiment's own unless `method` asks for another
    view); a fixed horizon refuses to call a result before the planned units. `candidate` (a served
    alias) adds off-policy estimates from exploration logs."""
    import pandas as pd

    from experiments.ab import analysis, impressions
    from experiments.ab.segments import STANDARD_SEGMENTS, segment_breakdown, unit_segments
    from experiments.ab.sequential_report import sequential_report

    exp = store.get_experiment(session, name)
    name = exp.name  # the analysis selects the event log's rows by it
    method = method or exp.inference
    events = pd.DataFrame(store.event_log(session, name))
    if events.empty:
        raise HTTPException(status.HTTP_409_CONFLICT, f"experiment {name!r} has no exposures yet")
    plan = exp.planned_units_per_variant
    try:
        report = analysis.analyze(
            events,
            name,
            metrics=[exp.primary_metric]
            if exp.primary_metric in analysis.METRICS
            else analysis.DEFAULT_METRICS,
            expected_shares={v.name: v.weight for v in exp.variants},
            planned_units=plan,
            cuped=False,
        )
        seq = sequential_report(
            events, name, method=method, metric=report["comparisons"][0]["metric"], planned_units=plan
        )
        shown = pd.DataFrame(store.impressions(session, name))
        out = ExperimentResults(experiment=name, method=method, report=report, sequential=seq)
        if "new_vs_returning" in events.columns:
            units = analysis.unit_table(events, name).units
            out.segments = segment_breakdown(
                units,
                unit_segments(events, name, list(STANDARD_SEGMENTS)),
                metrics=[r["metric"] for r in report["comparisons"]],
                control=report["control"],
            )
        if not shown.empty:
            attributed = impressions.attribute(shown, events)
            teams = attributed[attributed["team"].notna()]
            if len(teams):
                out.interleaving = impressions.interleaving_report(teams)
            if candidate is not None:
                explored = attributed[attributed["propensity"].notna()]
                lists = _candidate_lists(state, candidate, explored["unit_id"].unique().tolist())
                out.offpolicy = {"candidate": candidate, **impressions.offpolicy_report(explored, lists)}
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return out


def _candidate_lists(state, alias: str, units: list[str], depth: int = 50) -> dict[str, list[str]]:
    """The served alias's top products per logged shopper (the champion's or a loaded variant's)."""
    store_ = state.models if alias == state.settings.model_alias else state.aliases.stores.get(alias)
    snapshot = None if store_ is None else store_.current
    if snapshot is None or snapshot.recommender is None:
        raise ValueError(f"alias {alias!r} is not loaded in this replica; use `crosscart experiment analyze`")
    ranked = snapshot.recommender.recommend(units, n=depth, exclude_seen=False)
    return {u: [item for item, _ in r] for u, r in zip(units, ranked, strict=True)}
