"""`crosscart campaign`: plan, run and measure coupon campaigns (draft -> scheduled -> running -> completed).

Thin layer over `commerce.campaigns` (lifecycle, grants), `marketing.planning` (who gets which
coupon) and `marketing.measurement` (treated versus holdout measurement).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from commerce.files import atomic_path
from crosscart.cli.audit import operator_audit
from crosscart.cli.progress import working

app = typer.Typer(help="Coupon campaigns: plan, schedule, run, export, measure.", no_args_is_help=True)


def _stored_id(value: str) -> str:
    """A campaign id argument as the API's URLs read it (`serving.deps.stored_id`: as typed if a
    campaign has it, else in its normal form): `get_campaign` found `ｃｍｐ１` for `cmp1`, but the
    audience, the moves and the export read the id as typed (`plan` refused after all its work, `export`
    wrote no rows)."""
    from commerce.campaigns import Campaign
    from commerce.db import read_only
    from commerce.services._util import stored_key

    with read_only(_factory()) as session:
        return stored_key(session, Campaign, value)


def _factory():
    from commerce.db import make_engine, make_session_factory
    from crosscart.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return make_session_factory(make_engine(settings.resolved_database_url))


def _run(action):
    """Run `action(session)` in one transaction; domain and input errors exit 2 with the message."""
    import commerce.all_models  # noqa: F401  (complete metadata for the relationships)
    from commerce.db import transaction
    from commerce.errors import DomainError

    try:
        with transaction(_factory()) as session:
            return action(session)
    except (DomainError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _nan_to_none(value):
    """An undefined figure (ROI without any redemption) as null, so the JSON stays strict."""
    if isinstance(value, tuple):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and value != value else value


@app.command("create")
def create(
    name: str = typer.Option(..., "--name"),
    channel: str = typer.Option(..., "--channel", help="site, email, social or search_ads."),
    budget: str = typer.Option(..., "--budget", help="Expected coupon cost cap, CNY."),
    starts: datetime = typer.Option(..., "--starts", help="Start time (UTC)."),
    ends: datetime = typer.Option(..., "--ends", help="End time (UTC)."),
    control_share: str = typer.Option("0.1", "--control-share", help="Holdout share of the audience."),
    campaign_id: str | None = typer.Option(None, "--id", help="Default: generated."),
) -> None:
    """Create a draft campaign; prints its id. Its arms are grant-only coupons:
    `crosscart coupon create --campaign ID --requires-grant ...`. Audited, with its terms."""
    from dataclasses import asdict

    from commerce.services.campaigns import CampaignInput, create_campaign

    data = CampaignInput(name, channel, budget, starts, ends, control_share, campaign_id)

    def run(session):
        created = create_campaign(session, data).campaign_id
        operator_audit(session, "campaign.created", "campaign", created, **asdict(data))
        return created

    typer.echo(_run(run))


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="draft, scheduled, running or completed."),
    channel: str | None = typer.Option(None, "--channel", help="site, email, social or search_ads."),
    active_at: datetime | None = typer.Option(None, "--active-at", help="Only campaigns running then (UTC)."),
    name: str | None = typer.Option(None, "--name", help="Part of the name, any case."),
    limit: int = typer.Option(50, "--limit"),
    offset: int = typer.Option(0, "--offset"),
) -> None:
    """Campaigns newest first with what their coupons have given away, as JSON: `items`, `total`, `limit`
    and `offset`, the same page the API's `GET /v1/campaigns` answers."""
    from datetime import UTC

    from commerce.services.campaign_overview import list_campaigns
    from serving.schemas.base import PageOut
    from serving.schemas.marketing import CampaignOut

    when = active_at.replace(tzinfo=UTC) if active_at is not None and active_at.tzinfo is None else active_at

    def run(session):
        page = list_campaigns(session, status=status, channel=channel, active_at=when, name=name,
                              limit=limit, offset=offset)  # fmt: skip
        items = [CampaignOut.model_validate(c, from_attributes=True) for c in page.items]
        return PageOut[CampaignOut](
            items=items, total=page.total, limit=limit, offset=offset
        ).model_dump_json()

    typer.echo(_run(run))


@app.command("plan")
def plan(
    campaign_id: str = typer.Argument(..., callback=_stored_id),
    candidates: Path | None = typer.Option(
        None,
        "--candidates",
        exists=True,
        dir_okay=False,
        help="CSV: shopper_id, coupon_id, p_control, p_treated, spend_control, spend_treated[, p_redeem]. "
        "Default: every shopper in the database, effects from the uplift model.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        exists=True,
        file_okay=False,
        help="Fit a fresh effect model on this marketplace directory instead of the registered one.",
    ),
    events: Path | None = typer.Option(
        None, "--events", exists=True, help="Exported events Parquet to build features from (default: DB)."
    ),
    region: str | None = typer.Option(None, "--region", help="Only shoppers of this region."),
    segment: str | None = typer.Option(None, "--segment", help="Only shoppers of this segment."),
    margin: float = typer.Option(0.3, "--margin", help="Gross margin rate on incremental revenue."),
    method: str = typer.Option("lagrangian", "--method", help="lagrangian or greedy."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random holdout."),
    curve_out: Path | None = typer.Option(None, "--curve-out", help="Write profit vs audience size CSV."),
    as_json: bool = typer.Option(False, "--json", help="The summary as one JSON object, policy_value in it."),
) -> None:
    """Choose who gets which of the campaign's coupons within its budget, and store it as the audience.

    Without --candidates: candidates are the database's shoppers (--region/--segment filter), effects
    come from the registered uplift model (Settings.uplift_model_name@model_alias) or, with --data, a
    model fitted on that marketplace. Prints the plan's expected figures and its incremental profit as
    the model forecasts it beside the past randomised campaigns' IPS and DR estimates (a WARNING when
    they disagree)."""
    import json

    if candidates is not None and (data or events or region or segment):
        typer.echo("error: --candidates excludes --data, --events, --region and --segment", err=True)
        raise typer.Exit(2)
    import pandas as pd

    import commerce.all_models  # noqa: F401  (complete metadata for the relationships)
    from commerce.errors import DomainError
    from crosscart.settings import get_settings
    from marketing.planning import effect_model, plan_and_store
    from training.registry import ModelUnavailable

    settings = get_settings()
    try:
        with working("planning the campaign"):
            model, table = None, None
            if candidates is None:
                model = effect_model(
                    market_dir=data,
                    tracking_uri=settings.resolved_mlflow_uri,
                    name=settings.uplift_model_name,
                    alias=settings.model_alias,
                    seed=seed,
                )
            else:
                table = pd.read_csv(candidates, dtype={"shopper_id": str, "coupon_id": str})
            result = plan_and_store(
                _factory(),
                campaign_id,
                model=model,
                candidates=table,
                events_path=events,
                region=region,
                segment=segment,
                margin_rate=margin,
                method=method,
                random_state=seed,
                on_stored=lambda session, detail: operator_audit(
                    session, "campaign.planned", "campaign", campaign_id, **detail
                ),
            )
    except (DomainError, ValueError, FileNotFoundError, ModelUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if curve_out is not None:
        with atomic_path(curve_out) as tmp:
            result.curve.to_csv(tmp, index=False)
    summary = {k: (str(v) if k == "budget" else _nan_to_none(v)) for k, v in result.summary.items()}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(_plan_table(summary))


def _money(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _plan_table(summary: dict) -> str:
    """The plan's expected figures, then its incremental profit: forecast beside the policy value."""
    value = summary["policy_value"]
    lines = [f"{key}: {summary[key]}" for key in summary if key != "policy_value"]
    lines += ["", f"{'incremental profit, CNY':<34}{'estimate':>12}  {value['confidence']:.0%} interval"]
    model_interval = (
        "none (the model gives none)"
        if value["model_low"] is None
        else f"{_money(value['model_low'])} to {_money(value['model_high'])}"
    )
    lines.append(f"{'model forecast, whole plan':<34}{_money(value['model_profit']):>12}  {model_interval}")
    if value["treated_estimated"] != value["treated"] and value["model_profit_estimated"] is not None:
        label = f"  of the {value['treated_estimated']} shoppers estimated"
        lines.append(f"{label:<34}{_money(value['model_profit_estimated']):>12}")
    for name, key in (("inverse propensity (IPS)", "ips"), ("doubly robust (DR)", "dr")):
        interval = (
            f"{_money(value[key + '_low'])} to {_money(value[key + '_high'])}"
            if value[key] is not None
            else ""
        )
        lines.append(f"{name:<34}{_money(value[key]):>12}  {interval}")
    lines.append(
        f"logged randomised rows: {value['rows_used']} used, {value['rows_without_propensity']} without "
        f"logged probabilities, {value['rows_without_support']} where the plan's terms or the holdout "
        "could not be drawn"
    )
    if value["coupons_without_history"]:
        lines.append(f"coupons without enough history: {', '.join(value['coupons_without_history'])}")
    lines.append(("WARNING: " if value["disagreement"] else "") + value["message"])
    return "\n".join(lines)


@app.command("schedule")
def schedule(campaign_id: str = typer.Argument(..., callback=_stored_id)) -> None:
    """draft -> scheduled (needs an audience with treated shoppers and a holdout); audited."""
    from commerce.services.campaigns import schedule_campaign

    def run(session):
        status = schedule_campaign(session, campaign_id).status
        operator_audit(session, "campaign.scheduled", "campaign", campaign_id)
        return status

    typer.echo(_run(run))


@app.command("launch")
def launch(campaign_id: str = typer.Argument(..., callback=_stored_id)) -> None:
    """scheduled -> running: grant the coupons over the campaign's channel (the API's `launch` too);
    recorded in the audit log as the operator's action."""
    from commerce.services.campaigns import start_campaign

    def run(session):
        campaign = start_campaign(session, campaign_id)
        operator_audit(session, "campaign.launched", "campaign", campaign_id, budget=str(campaign.budget))
        return campaign.status

    typer.echo(_run(run))


@app.command("complete")
def complete(campaign_id: str = typer.Argument(..., callback=_stored_id)) -> None:
    """running -> completed: closes the measurement window; audited."""
    from commerce.services.campaigns import complete_campaign

    def run(session):
        status = complete_campaign(session, campaign_id).status
        operator_audit(session, "campaign.completed", "campaign", campaign_id)
        return status

    typer.echo(_run(run))


@app.command("export")
def export(
    campaign_id: str = typer.Argument(..., callback=_stored_id),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="CSV file to write."),
) -> None:
    """Write the audience (shopper_id, arm, coupon_id, channel, grant_id) as CSV."""
    from commerce.services.campaigns import export_audience_csv

    def action(session):
        with atomic_path(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
            return export_audience_csv(session, campaign_id, fh)

    typer.echo(f"wrote {_run(action)} rows to {out}")


@app.command("report")
def report(
    campaign_id: str = typer.Argument(..., callback=_stored_id),
    margin: float = typer.Option(0.3, "--margin", help="Gross margin rate on incremental revenue."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Measure a completed campaign: treated versus holdout, with 95% confidence intervals."""
    import json

    from marketing.measurement import measure_stored_campaign

    result = _run(lambda s: measure_stored_campaign(s, campaign_id, margin))
    figures = {key: _nan_to_none(value) for key, value in result.to_dict().items()}
    if as_json:
        typer.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        typer.echo(f"{key}: {value}")


@app.command("simulate-loop")
def simulate_loop(
    rounds: int = typer.Option(8, "--rounds", help="Successive weekly campaigns."),
    budget: float = typer.Option(..., "--budget", help="Coupon budget of every campaign, CNY."),
    seed: int = typer.Option(0, "--seed", help="Seed of the marketplace and of the loop's draws."),
    scale: str = typer.Option("demo", "--scale", help="Marketplace to generate: tiny (quick) or demo."),
    data: Path | None = typer.Option(
        None, "--data", exists=True, file_okay=False, help="Use this generated marketplace instead."
    ),
    explore_share: float = typer.Option(
        0.1, "--explore-share", help="Closed loop: the first round's budget share for randomised terms."
    ),
    explore_floor: float = typer.Option(
        0.02, "--explore-floor", help="Closed loop: the lowest share the exploration shrinks to."
    ),
    explore_decay: float = typer.Option(
        0.5, "--explore-decay", help="Closed loop: share in round t = explore-share x t ** -this (0: fixed)."
    ),
    margin: float = typer.Option(0.3, "--margin", help="Gross margin rate."),
    learner: str = typer.Option(
        "terms", "--learner", help="Closed loop's learner: terms (R-learner on depth), auto, logistic, lgbm."
    ),
    history: str = typer.Option(
        "posterior",
        "--history",
        help="How shoppers' own weeks enter the closed loop: posterior (per-shopper Bayes) or features.",
    ),
    fatigue: float = typer.Option(
        1.0, "--fatigue", help="Truth: a coupon's effect x this per coupon in the last 2 rounds (1 = none)."
    ),
    frequency_cap: int | None = typer.Option(
        None, "--frequency-cap", help="Contact policy: no coupon after this many in the last 3 rounds."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, per round and strategy."),
) -> None:
    """Run closed-loop, no-exploration and response-model campaigns on the marketplace truth and
    report each round's profit against the oracle, true spend and the pre-launch policy value."""
    import json
    import tempfile

    from features.synth import generate_marketplace
    from marketing.closed_loop import LOOP_SCALES, LoopSettings, load_loop_market
    from marketing.closed_loop import simulate_loop as run_loop

    if scale not in LOOP_SCALES:
        typer.echo(f"error: --scale must be one of {sorted(LOOP_SCALES)}", err=True)
        raise typer.Exit(2)
    try:
        settings = LoopSettings(rounds=rounds, budget=budget, seed=seed, margin_rate=margin,
                                explore_share=explore_share, explore_floor=explore_floor,
                                explore_decay=explore_decay, learner=learner, history=history,
                                fatigue=fatigue, frequency_cap=frequency_cap)  # fmt: skip
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    with tempfile.TemporaryDirectory(prefix="crosscart-loop-") as tmp:
        directory = data
        if directory is None:
            directory = Path(tmp) / "market"  # published as a link into `tmp`: all removed with it
            with working(f"generating a {scale} marketplace"):
                generate_marketplace(directory, scale=LOOP_SCALES[scale], seed=seed)
        with working("learning today's planner"):
            market = load_loop_market(directory, settings.coupons, margin, seed=seed)
        with working(f"running {rounds} rounds"):
            rows = run_loop(market, settings)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
        else:
            ratio = "-" if row["profit_vs_oracle"] is None else f"{row['profit_vs_oracle']:.2f}"
            low, high = row["policy_value_low"], row["policy_value_high"]
            method = (row["policy_value_method"] or "").upper()
            pv = "-" if low is None else f"{method} [{low:,.0f}, {high:,.0f}]"
            # the planning model's own forecast beside the logged data's estimate, flagged when outside
            warn = (
                "  WARNING: model forecast outside the policy-value interval"
                if row["policy_value_disagrees"]
                else ""
            )
            typer.echo(
                f"{row['round']:>2} {row['strategy']:<15} vs oracle {ratio:>6}"
                f"  spend {row['true_spend']:>10,.0f} / {row['budget']:,.0f}"
                f"  realised {row['realized_profit']:>10,.0f}"
                f"  model forecast {row['predicted_profit']:>10,.0f}"
                f"  policy value {pv}{warn}"
            )
