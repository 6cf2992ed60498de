"""`crosscart experiment`: online A/B tests (define, start, stop, analyse, simulate, size) and offline
studies (`run STUDY.toml`). Thin commands over `commerce.experiments`, `experiments.ab` and
`training.study`; heavy imports stay inside the functions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crosscart.cli.audit import operator_audit
from crosscart.cli.progress import working

app = typer.Typer(help="Online A/B experiments and offline studies.", no_args_is_help=True)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    """NAME=VALUE options (repeated, or comma-separated in one option) -> dict, in the given order."""
    out: dict[str, str] = {}
    for item in (p.strip() for raw in items for p in raw.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise typer.BadParameter(f"{what} {item!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _pairs_json(items: list[str]) -> dict[str, dict]:
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep else None
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--config {item!r}: {exc}") from exc
        if not isinstance(value, dict):
            raise typer.BadParameter(f"--config {item!r} is not NAME=JSON-OBJECT")
        out[name.strip()] = value
    return out


def _session_factory():
    from commerce.db import make_engine, make_session_factory
    from crosscart.settings import get_settings

    return make_session_factory(make_engine(get_settings().resolved_database_url))


def _print(payload, as_json: bool) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str) if as_json else payload)


def _line(r: dict) -> str:
    """One experiment as a table line: name, status, layer slice, variants with weights."""
    variants = ", ".join(f"{v['name']}={v['weight']:g}" for v in r["variants"])
    where = f"layer {r['layer']} " if r["layer"] else ""
    slice_ = f"[{r['traffic_start']:.2f}, {r['traffic_end']:.2f})"
    return f"{r['name']:<30} {r['status']:<8} {where}{slice_} {variants}"


def _describe(exp) -> dict:
    config = exp.as_config()
    config.update(
        description=exp.description,
        created_at=exp.created_at,
        started_at=exp.started_at,
        stopped_at=exp.stopped_at,
    )
    return config


def _db_call(fn, *args, **kwargs):
    """Run a `commerce.experiments` function in one transaction; domain errors exit 2 (a schema behind the
    code, like any command's, exits 1 saying to run `crosscart db upgrade`)."""
    from commerce.db import transaction
    from commerce.errors import DomainError
    from commerce.services.pagination import Page

    try:
        with transaction(_session_factory()) as session:
            result = fn(session, *args, **kwargs)
            if isinstance(result, Page):
                return {**vars(result), "items": [_describe(e) for e in result.items]}
            return [_describe(e) for e in result] if isinstance(result, list) else _describe(result)
    except DomainError as exc:
        raise _fail(exc) from exc


def _audited(change, action: str, detail=lambda exp: {"name": exp.name}):
    """`change(session, ...)` followed, in its transaction, by the audit entry the API writes for it."""

    def run(session, *args, **kwargs):
        exp = change(session, *args, **kwargs)
        operator_audit(session, action, "experiment", exp.id, **detail(exp))
        return exp

    return run


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Unique experiment name (also the default salt)."),
    variant: list[str] = typer.Option(..., "--variant", "-v", help="NAME=WEIGHT, repeat per variant."),
    config: list[str] = typer.Option([], "--config", help="NAME=JSON: what a variant means to the API."),
    layer: str | None = typer.Option(None, help="Layer for mutually exclusive experiments."),
    traffic: float = typer.Option(1.0, help="Share of units (of the layer) in the experiment."),
    salt: str | None = typer.Option(None, help="Hash salt; default the name."),
    description: str = typer.Option("", help="What is tested and why."),
    primary_metric: str = typer.Option("conversion", help="The decision metric."),
    planned_units: int | None = typer.Option(None, help="Fixed horizon: units per variant."),
    inference: str = typer.Option("fixed", help="How results may be read: fixed, msprt or group-sequential."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Define a draft experiment with weighted variants (audited, as the API's create is)."""
    from commerce.services import experiments as ex

    weights = _pairs(variant, "--variant")
    configs = {}
    from serving.ab import check_variant_config

    for vname, text in _pairs_json(config).items():
        if vname not in weights:
            raise typer.BadParameter(f"--config names unknown variant {vname!r}")
        try:
            configs[vname] = check_variant_config(text)
        except ValueError as exc:
            raise typer.BadParameter(f"--config {vname}: {exc}") from exc
    variants = [(v, w, configs.get(v)) for v, w in weights.items()]
    result = _db_call(
        _audited(ex.create_experiment, "experiment.created", ex.creation_detail),
        name,
        variants,
        layer=layer,
        traffic=traffic,
        salt=salt,
        description=description,
        primary_metric=primary_metric,
        planned_units_per_variant=planned_units,
        inference=inference,
    )
    _print(result if as_json else _line(result), as_json)


@app.command("list")
def list_(
    status: str | None = typer.Option(None, help="draft, running or stopped."),
    limit: int = typer.Option(50, "--limit", help="Experiments per page."),
    offset: int = typer.Option(0, "--offset", help="Experiments to skip."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List experiments with their variants, layer slice and status, a page at a time (oldest first);
    with --json one object with `items`, `total`, `limit` and `offset`, as the API answers."""
    from commerce.services import experiments as ex

    page = _db_call(ex.list_experiments, status=status, limit=limit, offset=offset)
    if as_json:
        _print(page, True)
        return
    for r in page["items"]:
        typer.echo(_line(r))
    shown = len(page["items"])
    typer.echo(f"{offset + 1 if shown else 0}-{offset + shown} of {page['total']}", err=True)


@app.command("start")
def start(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Start a draft experiment: the API begins assigning units to it. Refused (exit 2, one `error:`
    line) past the caps on running experiments and the model aliases they serve, as the API refuses."""
    from crosscart.settings import get_settings
    from serving.ab import start_experiment

    result = _db_call(_audited(start_experiment, "experiment.started"), name, get_settings().model_alias)
    _print(result if as_json else _line(result), as_json)


@app.command("stop")
def stop(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Stop a running experiment for good (its layer slice becomes free); audited."""
    from commerce.services import experiments as ex

    result = _db_call(_audited(ex.stop_experiment, "experiment.stopped"), name)
    _print(result if as_json else _line(result), as_json)


def _read_events(path: Path):
    import pandas as pd

    from features.loaders import read_table

    if not path.exists():
        raise FileNotFoundError(f"no event file at {path}")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return read_table(path, dtype={"unit_id": "str", "variant": "str", "experiment": "str"})
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, dtype={"unit_id": str})
    raise ValueError(f"{path}: use .parquet, .csv or .jsonl")


@app.command("analyze")
def analyze(
    events: Path | None = typer.Option(
        None,
        help="Event log: .parquet, .csv or .jsonl (docs/experiments.md); --from-db: the database.",
    ),
    experiment: str = typer.Option(..., help="Experiment name in the log."),
    metrics: list[str] = typer.Option([], help="Decision metrics (repeat or comma-separate); default all."),
    guardrail: list[str] = typer.Option([], help="METRIC=decrease|increase: the harmful direction."),
    weights: list[str] = typer.Option([], help="VARIANT=WEIGHT expected traffic; default equal."),
    from_db: bool = typer.Option(
        False, help="Take weights and planned units from the experiment's definition in the database."
    ),
    control: str | None = typer.Option(None, help="Control variant; default `control` or the first."),
    planned_units: int | None = typer.Option(None, help="Fixed horizon: units per variant."),
    alpha: float = typer.Option(0.05),
    correction: str = typer.Option("holm", help="holm or bh (Benjamini-Hochberg)."),
    cuped: bool = typer.Option(True, help="CUPED with the `pre_value` column when present."),
    method: str | None = typer.Option(
        None,
        help="Inference: fixed (horizon), msprt or group-sequential (daily looks); "
        "default the experiment's own with --from-db, else fixed.",
    ),
    impressions: Path | None = typer.Option(
        None,
        help="Impression log (interleaving/exploration variants); with --from-db read from the database.",
    ),
    candidate: str | None = typer.Option(
        None, help="Registry alias of a candidate model: off-policy estimates from the exploration logs."
    ),
    purchase_weight: float = typer.Option(1.0, help="Interleaving credit of a purchase, in clicks."),
    segment: list[str] = typer.Option(
        [], help="Unit-level event-log column to break the lift down by (repeat), e.g. new_vs_returning."
    ),
    report_dir: Path | None = typer.Option(None, help="Write report.md, report.json and PNG figures here."),
    mlflow: bool = typer.Option(False, help="With --report-dir: log the report as MLflow artifacts."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per-metric lift with 95% CIs, p-values (corrected), SRM verdict and the horizon status; the
    sequential looks of the primary metric; interleaving preference and off-policy estimates."""
    from experiments.ab import analysis

    names = [m.strip() for raw in metrics for m in raw.split(",") if m.strip()]
    shares = {v: float(w) for v, w in _pairs(weights, "--weights").items()} if weights else None
    if from_db:
        from commerce.services import experiments as ex

        definition = _db_call(ex.get_experiment, experiment)
        experiment = definition["name"]  # the stored name: the event log's rows carry it
        shares = shares or {v["name"]: v["weight"] for v in definition["variants"]}
        planned_units = planned_units or definition["planned_units_per_variant"]
        method = method or definition["inference"]
    method = method or "fixed"
    if events is None and not from_db:
        raise _fail(ValueError("give --events FILE, or --from-db to read the database's event log"))
    try:
        log = _read_events(events) if events is not None else _db_event_log(experiment)
        report = analysis.analyze(
            log,
            experiment,
            metrics=names or analysis.DEFAULT_METRICS,
            guardrails=_pairs(guardrail, "--guardrail"),
            expected_shares=shares,
            control=control,
            planned_units=planned_units,
            alpha=alpha,
            correction=correction,
            cuped=cuped,
        )
        extra = _round2(
            log,
            experiment,
            names,
            method,
            planned_units,
            alpha,
            control,
            impressions,
            from_db,
            candidate,
            purchase_weight,
        )
        if segment:
            from experiments.ab.segments import segment_breakdown, unit_segments

            units = analysis.unit_table(log, experiment).units
            extra["segments"] = segment_breakdown(
                units,
                unit_segments(log, experiment, segment),
                metrics=names or list(analysis.DEFAULT_METRICS),
                control=report["control"],
                alpha=alpha,
                correction=correction,
            )
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    report.update(extra)
    if report_dir is not None:
        from crosscart.settings import get_settings
        from experiments.ab.report import write_report
        from training.tracking import log_directory

        written = write_report(report, report_dir)
        if mlflow:
            run_name = f"analysis:{report['experiment']}"
            log_directory(get_settings().resolved_mlflow_uri, "crosscart-experiments", run_name, report_dir)
        typer.echo(f"report: {written}", err=True)
    if as_json:
        _print(report, True)
        return
    srm = report["srm"]
    typer.echo(
        f"{experiment}: {report['status']}; SRM p={srm['p_value']:.4g}"
        f"{' FLAGGED' if srm['flagged'] else ''}; units {srm['observed']}"
    )
    for r in report["comparisons"]:
        lo, hi = r["abs_ci"]
        typer.echo(
            f"  {r['treatment']} {r['metric']:<20} {r['control_value']:.4g} -> "
            f"{r['treatment_value']:.4g}  lift {r['abs_lift']:+.4g} [{lo:+.4g}, {hi:+.4g}] "
            f"({r['rel_lift']:+.1%})  p={r['p_value']:.3g} adj={r['p_adjusted']:.3g}  {r['verdict']}"
        )
    seq = report["sequential"]
    for c in seq["comparisons"]:
        typer.echo(
            f"  {seq['method']} ({seq['metric']}, {len(c['looks'])} looks): {c['treatment']}: {c['verdict']}"
        )
    if "interleaving" in report:
        il = report["interleaving"]
        lo, hi = il["ci"]
        typer.echo(
            f"  interleaving {il['teams']['A']} vs {il['teams']['B']}: delta {il['delta']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] wins {il['wins_a']}/{il['wins_b']} ties {il['ties']} "
            f"p={il['p_value']:.3g} winner {il['winner'] or 'none yet'}"
        )
    if "offpolicy" in report:
        op = report["offpolicy"]
        for m in ("ctr", "purchase_rate"):
            r = op[m]
            typer.echo(
                f"  off-policy {candidate} {m}: IPS {r['ips']:.4f} SNIPS {r['snips']:.4f} "
                f"DR {r['dr']:.4f} [{r['dr_ci'][0]:.4f}, {r['dr_ci'][1]:.4f}] (logged {op['logged'][m]:.4f})"
            )


def _db_event_log(experiment: str):
    """Exposures plus the exposed shoppers' views (as clicks) and purchases, from the database; without
    exposures there is nothing to analyse (the API's results answer 409 for the same reason)."""
    import pandas as pd

    from commerce.db import transaction
    from commerce.services import experiments as ex

    with transaction(_session_factory()) as session:
        log = pd.DataFrame(ex.event_log(session, experiment))
    if log.empty:
        raise ValueError(f"experiment {experiment!r} has no exposures yet")
    return log


def _round2(
    events,
    experiment,
    names,
    method,
    planned_units,
    alpha,
    control,
    impressions,
    from_db,
    candidate,
    purchase_weight,
) -> dict:
    """Sequential looks of the first decision metric, and the impression-based reports when logged."""
    import pandas as pd

    from experiments.ab import impressions as imp
    from experiments.ab.analysis import DEFAULT_METRICS
    from experiments.ab.sequential_report import sequential_report

    out = {
        "sequential": sequential_report(
            events,
            experiment,
            method=method,
            metric=(names or DEFAULT_METRICS)[0],
            control=control,
            planned_units=planned_units,
            alpha=alpha,
        )
    }
    if impressions is not None:
        shown = _read_events(impressions)
    elif from_db:
        from commerce.db import transaction
        from commerce.services import experiments as ex

        with transaction(_session_factory()) as session:
            shown = pd.DataFrame(ex.impressions(session, experiment))
    else:
        shown = None
    if shown is None or shown.empty:
        if candidate:
            raise ValueError("--candidate needs logged impressions of an exploration variant")
        return out
    attributed = imp.attribute(shown, events[events["experiment"] == experiment])
    teams = attributed[attributed["team"].notna()] if "team" in attributed else attributed.iloc[:0]
    if len(teams):
        out["interleaving"] = imp.interleaving_report(teams, purchase_weight, alpha)
    if candidate:
        explored = attributed[attributed["propensity"].notna()]
        lists, offline = _candidate_lists(candidate, explored["unit_id"].unique().tolist())
        out["offpolicy"] = {
            "candidate": candidate,
            **imp.offpolicy_report(explored, lists, alpha),
            "offline_metrics": offline,
        }
    return out


def _candidate_lists(alias: str, units: list[str], depth: int = 50) -> tuple[dict[str, list[str]], dict]:
    """The candidate alias's top `depth` products for each logged shopper, from the model registry,
    and the offline ranking metrics its training run recorded (shown next to the estimates)."""
    from mlflow import MlflowClient

    from crosscart.settings import get_settings
    from training.registry import ModelUnavailable, champion_version, load_recommender_version

    settings = get_settings()
    client = MlflowClient(settings.resolved_mlflow_uri)
    try:
        version = champion_version(client, settings.model_name, alias)
        if version is None:
            raise ValueError(f"no model version under alias {alias!r} of {settings.model_name!r}")
        uri, name = settings.resolved_mlflow_uri, settings.model_name
        model = load_recommender_version(uri, name, str(version.version))
    except ModelUnavailable as exc:
        raise ValueError(str(exc)) from exc
    ranked = model.recommend(units, n=depth, exclude_seen=False)
    offline = client.get_run(version.run_id).data.metrics if version.run_id else {}
    return {u: [item for item, _ in r] for u, r in zip(units, ranked, strict=True)}, dict(offline)


@app.command("simulate")
def simulate(
    aa: bool = typer.Option(True, "--aa/--power", help="A/A (false-positive rate) or power mode."),
    runs: int = typer.Option(200, min=1),
    scenario: str = typer.Option("recommender", help="recommender or coupon (explicit true rates)."),
    marketplace: Path | None = typer.Option(
        None,
        help="A `crosscart generate` output: coupon policy A vs B "
        "with shoppers reacting by their true tastes.",
    ),
    units: int | None = typer.Option(None, help="Units per run (power mode: default from the calculator)."),
    metric: str = typer.Option("conversion"),
    alpha: float = typer.Option(0.05),
    target_power: float = typer.Option(0.8, help="Power mode: the calculator's target."),
    seed: int = typer.Option(0),
    looks: int | None = typer.Option(
        None, min=1, help="Peeking check: looks per test (e.g. 14 daily looks); default 14 with --method."
    ),
    method: str | None = typer.Option(
        None, help="Peeking check: msprt, group-sequential or fixed (naive peeking at fixed p-values)."
    ),
    effect: float = typer.Option(
        0.0, help="Peeking check: true relative change of the click rate (0 = A/A; else `power`)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Simulated online tests against known truth: measured false-positive rate or power.

    With --method/--looks every test is looked at after each of L equal batches and stopped at the
    first rejection (docs/experiments.md, "Peeking")."""
    from experiments.ab.simulation import SCENARIOS, coupon_policy_scenario, run_simulation

    if scenario not in SCENARIOS:
        raise _fail(ValueError(f"unknown scenario {scenario!r}; choose from {sorted(SCENARIOS)}"))
    if method is not None or looks is not None:
        _simulate_peeking(
            SCENARIOS[scenario],
            method or "fixed",
            runs,
            looks or 14,
            units,
            metric,
            effect,
            alpha,
            seed,
            as_json,
        )
        return
    try:
        chosen = coupon_policy_scenario(marketplace) if marketplace else SCENARIOS[scenario]
        with working("simulating experiments"):
            result = run_simulation(
                chosen,
                mode="aa" if aa else "power",
                runs=runs,
                n_units=units,
                metric=metric,
                alpha=alpha,
                target_power=target_power,
                seed=seed,
            ).as_dict()
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    if as_json:
        _print(result, True)
        return
    label = "false-positive rate" if aa else "power"
    typer.echo(
        f"{result['scenario']} {metric}: {label} {result['rejection_rate']:.3f} over {runs} runs of "
        f"{result['n_units']} units (expected {result['expected_rate']:.3f}); "
        f"CI coverage {result['ci_coverage']:.3f}"
    )


def _simulate_peeking(scenario, method, runs, looks, units, metric, effect, alpha, seed, as_json) -> None:
    from experiments.ab.sequential_simulation import simulate_peeking

    try:
        with working("simulating peeked experiments"):
            result = simulate_peeking(
                scenario,
                method=method,
                runs=runs,
                looks=looks,
                units=units or 14_000,
                effect=effect,
                metric=metric,
                alpha=alpha,
                seed=seed,
            )
    except ValueError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print(result, True)
        return
    label, rate = (
        ("power", result["power"]) if "power" in result else ("false-positive rate", result["rejection_rate"])
    )
    typer.echo(
        f"{method}, {looks} looks, {runs} runs of {result['units_per_run']} units: {label} {rate:.3f} "
        f"(fixed test read once at the end: {result['fixed_final_look_rejection_rate']:.3f})"
    )


@app.command("power")
def power(
    baseline: float | None = typer.Option(None, help="Control rate for a conversion-type metric."),
    std: float | None = typer.Option(None, help="Unit-level standard deviation for a mean metric."),
    mde: float = typer.Option(..., help="Minimum detectable effect."),
    absolute: bool = typer.Option(False, help="With --baseline: mde is absolute, not relative."),
    alpha: float = typer.Option(0.05),
    target_power: float = typer.Option(0.8, "--power"),
    ratio: float = typer.Option(1.0, help="Treatment units per control unit."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Units per variant for the fixed horizon (give --baseline for a rate or --std for a mean)."""
    import math

    from experiments.ab import power as calc

    if (baseline is None) == (std is None):
        raise _fail(ValueError("give exactly one of --baseline (rate) or --std (mean metric)"))
    try:
        if baseline is not None:
            n = calc.sample_size_proportion(
                baseline, mde, relative=not absolute, alpha=alpha, power=target_power, ratio=ratio
            )
        else:
            n = calc.sample_size_mean(std, mde, alpha=alpha, power=target_power, ratio=ratio)
    except ValueError as exc:
        raise _fail(exc) from exc
    result = {
        "control_units": n,
        "treatment_units": math.ceil(n * ratio),
        "alpha": alpha,
        "power": target_power,
    }
    _print(result if as_json else f"{n} control units, {result['treatment_units']} treatment units", as_json)


@app.command("run")
def run(
    study: Path = typer.Argument(..., help="Study file (TOML); see experiments/studies/."),
    data: str | None = typer.Option(None, help="Override the dataset spec, e.g. movielens:PATH/u.data."),
    seeds: str | None = typer.Option(None, help="Override the seeds, e.g. 1,2,3."),
    out: Path | None = typer.Option(None, help="Report directory; default DATA_DIR/studies/NAME."),
    mlflow: bool = typer.Option(True, help="Log to MLflow (Settings.resolved_mlflow_uri)."),
) -> None:
    """Run an offline study: every model configuration x seed, MLflow runs, Markdown report."""
    from crosscart.settings import get_settings
    from training.study import load_study, run_study

    settings = get_settings()
    try:
        spec = load_study(study, data=data, seeds=[int(s) for s in seeds.split(",")] if seeds else None)
        with working("running the study"):
            result = run_study(
                spec,
                out or settings.data_dir / "studies" / spec.name,
                tracking_uri=settings.resolved_mlflow_uri if mlflow else None,
                log=lambda line: typer.echo(line, err=True),
            )
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"report: {result.report_path}")
    if result.parent_run_id:
        typer.echo(f"MLflow parent run: {result.parent_run_id} ({settings.resolved_mlflow_uri})")
