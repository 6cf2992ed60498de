"""`crosscart train`: fit, evaluate, log to MLflow, register (`recommender`), and hyper-parameter search
(`search`). `train uplift` is registered into this group from `crosscart/cli/train_uplift.py`.

Thin layer over `training.pipelines`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from crosscart.cli.progress import working

app = typer.Typer(help="Train models, log them to MLflow and register them.", no_args_is_help=True)

DataOpt = Annotated[
    str,
    typer.Option(
        "--data", help="movielens:PATH/u.data, events:FILE (with --user-col/--item-col) or synthetic:DIR"
    ),
]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split", help="stratified-item:0.75:42, random-user:0.75:42, temporal:0.8 or leave-last:1"
    ),
]
ModelOpt = Annotated[
    str, typer.Option("--model", help="popularity, trending, itemknn, als, bpr, ease, ranker, ...")
]
MetricOpt = Annotated[
    str, typer.Option("--metric", help="Metric that ranks models, e.g. ndcg@10, map, recall@20.")
]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", help="Model parameter NAME=VALUE (repeatable).")
]
ExperimentOpt = Annotated[str, typer.Option("--experiment", help="MLflow experiment name.")]
TrackingOpt = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow URI; default: Settings.resolved_mlflow_uri.")
]
NameOpt = Annotated[
    str | None, typer.Option("--registered-name", help="Registered model name; default: Settings.model_name.")
]
UserCol = Annotated[str | None, typer.Option("--user-col", help="events:FILE user id column.")]
ItemCol = Annotated[str | None, typer.Option("--item-col", help="events:FILE item id column.")]
TimeCol = Annotated[
    str | None, typer.Option("--time-col", help="events:FILE time column (unix s, ISO, or a common layout).")
]
EventCol = Annotated[str | None, typer.Option("--event-col", help="events:FILE event type column.")]
ValueCol = Annotated[str | None, typer.Option("--value-col", help="events:FILE value/quantity column.")]
HalfLife = Annotated[
    float | None, typer.Option("--half-life-days", help="Time decay of interaction weights.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a summary.")]


def _load(data, split, user_col, item_col, time_col, event_col, value_col, half_life_days):
    from training.pipelines import load_training_data

    return load_training_data(
        data,
        split,
        half_life_days=half_life_days,
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        event_col=event_col,
        value_col=value_col,
    )


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _promotion_text(promotion) -> str:
    if promotion is None:
        return "not registered (--no-register)"
    verdict = f"now {promotion.alias}" if promotion.promoted else f"{promotion.alias} unchanged"
    return f"{promotion.model_name} v{promotion.version}: {verdict} ({promotion.reason})"


@app.command("recommender")
def train_recommender_command(
    data: DataOpt,
    model: ModelOpt,
    split: SplitOpt = "temporal:0.8",
    param: ParamOpt = None,
    metric: MetricOpt = "ndcg@10",
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register in the registry.")
    ] = True,
    refit: Annotated[
        bool, typer.Option("--refit/--no-refit", help="Refit on all data before logging the model.")
    ] = True,
    force_promote: Annotated[
        bool, typer.Option("--force-promote", help="Move the alias even if the champion is better.")
    ] = False,
    experiment: ExperimentOpt = "crosscart-recommenders",
    tracking_uri: TrackingOpt = None,
    registered_name: NameOpt = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    event_col: EventCol = None,
    value_col: ValueCol = None,
    half_life_days: HalfLife = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit MODEL, evaluate it on the held-out split, log everything to MLflow, register it and move the
    champion alias only if it beats the current champion on METRIC."""
    from crosscart.settings import get_settings
    from training.pipelines import train_recommender
    from training.search import parse_params
    from training.tracking import check_tracking_uri

    settings = get_settings()
    try:
        uri = check_tracking_uri(tracking_uri or settings.resolved_mlflow_uri)  # before the slow load
        params = parse_params(param or [])
        training_data = _load(data, split, user_col, item_col, time_col, event_col, value_col, half_life_days)
        with working(f"training {model}"):
            result = train_recommender(
                training_data,
                model,
                params,
                tracking_uri=uri,
                metric=metric,
                experiment=experiment,
                registered_name=registered_name or settings.model_name,
                alias=settings.model_alias,
                register=register,
                refit=refit,
                force_promote=force_promote,
            )
    except (ValueError, FileNotFoundError, TypeError) as exc:
        raise _fail(exc) from exc
    promotion = result.promotion
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "model": result.model,
                    "params": result.params,
                    "metric": result.metric,
                    "value": result.value,
                    "metrics": result.metrics,
                    "version": promotion.version if promotion else None,
                    "promoted": promotion.promoted if promotion else False,
                    "reason": promotion.reason if promotion else None,
                }
            )
        )
        return
    typer.echo(f"run {result.run_id}: {result.model} {result.metric} = {result.value:.6f}")
    typer.echo(_promotion_text(promotion))


@app.command("search")
def train_search_command(
    data: DataOpt,
    model: ModelOpt,
    split: SplitOpt = "temporal:0.8",
    space: Annotated[
        str | None,
        typer.Option(
            "--space", help="Optuna space, e.g. 'factors=16..128:log,regularization=0.001..0.1:log'."
        ),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="Grid NAME=V1,V2,... (repeatable); every point is tried."),
    ] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Optuna trials (ignored with --grid).")] = 20,
    seed: Annotated[
        int, typer.Option("--seed", help="Sampler seed: the same seed tries the same points.")
    ] = 0,
    param: ParamOpt = None,
    metric: MetricOpt = "ndcg@10",
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Train and register the best parameters.")
    ] = False,
    experiment: ExperimentOpt = "crosscart-recommenders",
    tracking_uri: TrackingOpt = None,
    registered_name: NameOpt = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    event_col: EventCol = None,
    value_col: ValueCol = None,
    half_life_days: HalfLife = None,
    as_json: JsonOpt = False,
) -> None:
    """Search MODEL's hyper-parameters (optuna --space or a --grid): one MLflow parent run, one child run
    per trial, the best parameters logged on the parent."""
    from crosscart.settings import get_settings
    from training.pipelines import search_recommender
    from training.search import parse_params
    from training.tracking import check_tracking_uri

    settings = get_settings()
    try:
        uri = check_tracking_uri(tracking_uri or settings.resolved_mlflow_uri)
        base = parse_params(param or [])
        training_data = _load(data, split, user_col, item_col, time_col, event_col, value_col, half_life_days)
        with working(f"searching {model}"):
            result = search_recommender(
                training_data,
                model,
                tracking_uri=uri,
                space=space,
                grid=grid,
                trials=trials,
                seed=seed,
                base_params=base,
                metric=metric,
                experiment=experiment,
                register=register,
                registered_name=registered_name or settings.model_name,
                alias=settings.model_alias,
            )
    except (ValueError, FileNotFoundError, TypeError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "parent_run_id": result.parent_run_id,
                    "metric": result.metric,
                    "best_params": result.best_params,
                    "best_value": result.best_value,
                    "trials": [{"params": p, "value": v, "run_id": r} for p, v, r in result.trials],
                    "registered_version": result.final.promotion.version
                    if result.final and result.final.promotion
                    else None,
                }
            )
        )
        return
    for number, (params, value, _run) in enumerate(result.trials):
        typer.echo(f"trial {number}: {result.metric} = {value:.6f}  {params}")
    typer.echo(f"best {result.metric} = {result.best_value:.6f} with {result.best_params}")
    typer.echo(f"parent run {result.parent_run_id}")
    if result.final is not None:
        typer.echo(_promotion_text(result.final.promotion))
