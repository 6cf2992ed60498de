"""Data-scientist pages: experiments (list, create, detail with intervals / SRM / horizon / guardrails /
decision, start, stop) and models (versions, champion, metrics, plots, promote or roll back as admin).

Experiment management calls `serving.routers.experiments`; models `serving.routers.models`; the analysis is
`experiments.ab.analysis.analyze` over the experiment's exposures and its units' later behaviour events.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.events import BehaviorEvent
from commerce.services import experiments as store
from serving.console.auth import AdminOnly, Experiments, Models
from serving.console.charts import interval_chart
from serving.console.web import FormRoute, attempt, choices, past_the_end, redirect, refusal_page, render
from serving.deps import SessionDep, StateDep
from serving.routers import experiments as experiments_api
from serving.routers import models as models_api
from serving.routers.common import MAX_N, PageOffset
from serving.schemas.experiments import ExperimentCreate

router = APIRouter(route_class=FormRoute)

# The inference an experiment declares, as the console names it next to its results.
INFERENCE_METHODS = choices(
    "inference_methods",
    {
        "fixed": "fixed-horizon (read once, at the planned units)",
        "msprt": "mSPRT (always-valid p-values, safe to look daily)",
        "group-sequential": "group-sequential (O'Brien-Fleming-like boundaries at the planned looks)",
    },
)

# Metrics the stored events support: the events table holds purchases but no clicks, so no CTR here.
METRIC_CHOICES = choices("metric_choices", ("conversion", "revenue_per_shopper", "orders_per_shopper"))
OUTCOMES = ("purchase",)


def event_log(session: Session, name: str) -> pd.DataFrame:
    """The experiment's exposures plus its exposed units' purchases since their first exposure, as the
    analysis's event log."""
    exposures = pd.DataFrame(store.exposures(session, name))
    if exposures.empty:
        return exposures
    first = exposures.groupby("unit_id")["ts"].min()
    variant = exposures.groupby("unit_id")["variant"].first()
    rows = []
    units = list(first.index)
    since = min(first)
    for start in range(0, len(units), 5000):
        rows += session.execute(
            select(
                BehaviorEvent.shopper_id, BehaviorEvent.event_type, BehaviorEvent.value, BehaviorEvent.ts
            ).where(
                BehaviorEvent.shopper_id.in_(units[start : start + 5000]),
                BehaviorEvent.event_type.in_(OUTCOMES),
                BehaviorEvent.ts >= since,
            )
        ).all()
    outcomes = pd.DataFrame(rows, columns=["unit_id", "event_type", "value", "ts"])
    outcomes["experiment"] = name
    outcomes["variant"] = outcomes["unit_id"].map(variant)
    return pd.concat([exposures, outcomes], ignore_index=True)


def decision(report: dict, primary: str) -> str:
    """The call the numbers support, in the order that matters: a broken split voids everything, then
    the fixed horizon, then guardrails, then the primary metric."""
    if report["srm"]["flagged"]:
        return "Do not decide: the traffic split is broken (sample-ratio mismatch). Find the cause first."
    if report["status"] != "conclusive":
        return "Keep running: the planned sample size is not reached yet."
    rows = report["comparisons"]
    if any(r["verdict"] == "guardrail breached" for r in rows):
        return "Do not ship: a guardrail metric got significantly worse."
    wins = [r for r in rows if r["metric"] == primary and r["verdict"] == "significant increase"]
    if wins:
        best = max(wins, key=lambda r: r["abs_lift"])
        return f"Ship {best['treatment']}: {primary} rose significantly with guardrails intact."
    if any(r["metric"] == primary and r["verdict"] == "significant decrease" for r in rows):
        return f"Keep the control: {primary} fell significantly."
    return f"No significant difference in {primary}: keep the control (or plan a larger test)."


def analysis(session: Session, name: str) -> dict | None:
    """The report for the stored experiment: its primary metric decides, the other metrics are guardrails
    (harmful when they decrease); weights and the horizon come from its definition."""
    from experiments.ab.analysis import analyze

    exp = store.get_experiment(session, name)
    events = event_log(session, exp.name)
    if events.empty:
        return None
    return analyze(
        events,
        exp.name,
        metrics=[exp.primary_metric],
        guardrails={m: "decrease" for m in METRIC_CHOICES if m != exp.primary_metric},
        expected_shares={v.name: v.weight for v in exp.variants},
        planned_units=exp.planned_units_per_variant,
    )


def sequential_verdict(session: Session, exp) -> dict | None:
    """The primary metric's verdict under the experiment's declared inference, over its daily looks
    (a fixed horizon says "not yet conclusive" before its planned units, whatever the p-value)."""
    from experiments.ab.sequential_report import sequential_report

    events = event_log(session, exp.name)
    if events.empty:
        return None
    seq = sequential_report(
        events, exp.name, method=exp.inference, metric=exp.primary_metric,
        planned_units=exp.planned_units_per_variant,
    )  # fmt: skip
    comparison = seq["comparisons"][0]
    last = comparison["looks"][-1]
    # A fixed test's p-value exists only at its planned horizon; per-look ones are naive peeking.
    readable = exp.inference != "fixed" or comparison["plan_complete"]
    return {
        "metric": seq["metric"], "verdict": comparison["verdict"], "looks": comparison["looks"],
        "p_value": last.get("p_value") if readable else None,
    }  # fmt: skip


@router.get("/experiments")
async def experiment_list(
    request: Request, session: SessionDep, principal: Experiments, offset: PageOffset = 0
):
    page = await run_in_threadpool(experiments_api.list_experiments, session, principal, None, MAX_N, offset)
    if moved := past_the_end(request, page):
        return moved
    return await render(request, "experiments.html", title="Experiments", page=page)


@router.get("/experiments/new")
async def new_experiment(request: Request, _: Experiments):
    return await render(
        request, "experiment_new.html", title="New experiment", form={}
    )  # fmt: skip


@router.post("/experiments/new")
async def create_experiment(request: Request, session: SessionDep, principal: Experiments):
    """Numbers go to the API's schema as typed: Python's float and int read `٠.٥` and `1_5`."""
    form = await request.form()

    def create():
        variants = []
        for i in range(3):
            name = (form.get(f"variant{i}_name") or "").strip()
            if name:
                alias = (form.get(f"variant{i}_alias") or "").strip()
                weight = form.get(f"variant{i}_weight") or "1"
                variants.append(
                    {"name": name, "weight": weight, "config": {"model_alias": alias} if alias else None}
                )
        body = ExperimentCreate(
            name=form.get("name") or "",
            description=form.get("description") or "",
            layer=form.get("layer") or None,
            traffic=form.get("traffic") or "1",
            primary_metric=form.get("primary_metric") or "conversion",
            planned_units_per_variant=form.get("planned_units") or None,
            inference=form.get("inference") or "fixed",
            variants=variants,
        )
        return experiments_api.create_experiment(body, session, principal)

    made, error = await attempt(request, session, create)
    if error:
        return await render(
            request, "experiment_new.html", status_code=error.status_code, title="New experiment", form=form,
            error=error,
        )  # fmt: skip
    return redirect("/console/experiments", made.name)


def unknown_aliases(state, exp) -> set[str]:
    """The model aliases the experiment's variants name that the registered recommender does not have:
    serving gives such a variant the champion (`model.alias_fallback_reason`), so "champion against
    challenger" with no `challenger` is an A/A test that looks like an A/B test. Empty when the registry
    cannot be read: the page is not refused for it."""
    named = {(v.config or {}).get("model_alias") for v in exp.variants} - {None, ""}
    if not named:
        return set()
    try:
        versions = models_api.registry_cache.versions(
            state.settings.resolved_mlflow_uri, state.settings.model_name
        )
    except Exception:  # MLflow down or unconfigured: nothing known either way
        return set()
    return named - {a for v in versions for a in v.aliases}


@router.get("/experiments/{name}")
async def experiment_page(
    request: Request, name: str, session: SessionDep, state: StateDep, principal: Experiments
):
    exp, error = await attempt(
        request, None, lambda: experiments_api.get_experiment(name, session, principal)
    )
    if error:
        return await refusal_page(request, "Not found", error)
    report, analysis_error = await attempt(request, None, lambda: analysis(session, name))
    context = {
        "experiment": exp, "report": report, "analysis_error": analysis_error,
        "unknown_aliases": await run_in_threadpool(unknown_aliases, state, exp),
    }  # fmt: skip
    if report:
        context["sequential"], context["sequential_error"] = await attempt(
            request, None, lambda: sequential_verdict(session, exp)
        )
        context["decision"] = decision(report, exp.primary_metric)
        context["chart"] = interval_chart(
            "experiment-chart",
            "Absolute lift per metric with 95% confidence intervals",
            [
                (f"{r['treatment']}: {r['metric']}", r["abs_lift"], *r["abs_ci"])
                for r in report["comparisons"]
            ],
        )
    return await render(request, "experiment.html", title=f"Experiment {name}", **context)


@router.post("/experiments/{name}/{action}")
async def move_experiment(
    request: Request, name: str, action: str, session: SessionDep, state: StateDep, principal: Experiments
):
    if action not in ("start", "stop"):
        return await render(
            request, "error.html", status_code=404, title="Not found", message="no such action"
        )
    call = experiments_api.start_experiment if action == "start" else experiments_api.stop_experiment
    _, error = await attempt(request, session, lambda: call(name, session, state, principal))
    if error:
        return await refusal_page(request, "Cannot do that", error)
    return redirect("/console/experiments", name)


METRICS_SHOWN = {
    "recommender": ("ndcg_at_10", "precision_at_10", "recall_at_10", "map", "hit_rate_at_10", "coverage"),
    "uplift": ("qini_auc", "auuc", "uplift_at_10", "uplift_at_30"),
}


@router.get("/models")
async def models_page(request: Request, state: StateDep, principal: Models):
    models, error = await attempt(request, None, lambda: models_api.list_models(state))
    return await render(
        request, "models.html", title="Models", models=models or [], error=error, shown=METRICS_SHOWN,
        mlflow_ui=state.settings.mlflow_ui_url, may_promote=principal.role == "admin",
    )  # fmt: skip


@router.get("/models/{name}/versions/{version}/{path:path}")
async def model_plot(name: str, version: str, path: str, state: StateDep, _: Models):
    return models_api.plot_response(
        await run_in_threadpool(models_api.read_plot, state, name, version, path), path
    )


@router.post("/models/{name}/promote")
async def promote(
    request: Request, name: str, state: StateDep, principal: AdminOnly, version: Annotated[str, Form()]
):
    """Point `champion` at the version (promotion or rollback); serving picks it up on its next poll."""
    _, error = await attempt(
        request,
        None,
        lambda: models_api.move_alias(state, principal, name, state.settings.model_alias, version),
    )
    if error:
        return await render(request, "error.html", status_code=409, title="Cannot promote", message=error)
    return redirect("/console/models")
