"""`crosscart train uplift`: fit the coupon effect model on a synthetic marketplace's past campaigns, log
it to MLflow (metrics, Qini/uplift/calibration plots, the model) and register it (`training.uplift`)."""

from __future__ import annotations

from pathlib import Path

import typer

from crosscart.cli.progress import working


def train_uplift(
    data: Path = typer.Option(..., "--data", exists=True, file_okay=False, help="Marketplace directory."),
    learner: str = typer.Option(
        "x", "--learner", help="Purchase-uplift learner: s, t, x, dr, ct, s-lr, t-lr, x-lr, ens or auto."
    ),
    split: str = typer.Option(
        "0.3:42", "--split", help="TEST_SHARE:SEED, stratified by treatment x outcome."
    ),
    experiment: str = typer.Option("crosscart-uplift", "--experiment", help="MLflow experiment name."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Default: Settings.resolved_mlflow_uri."
    ),
    registered_name: str | None = typer.Option(
        None, "--registered-name", help="Default: Settings.uplift_model_name."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train the coupon effect model on past campaigns (arms: coupon kinds versus holdout) and register
    it; the alias moves only when the held-out Qini AUC (any coupon versus holdout, conversion) beats
    the champion's."""
    import json
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from crosscart.settings import get_settings
    from models.uplift.selection import MODEL_KEYS
    from training.evaluate_uplift import parse_split
    from training.uplift import train_uplift_model

    settings = get_settings()
    try:
        if learner not in MODEL_KEYS:
            raise ValueError(f"unknown learner {learner!r}; choose from {', '.join(MODEL_KEYS)}")
        test_size, seed = parse_split(split)
        with working("training the uplift model"):
            result = train_uplift_model(
                data,
                learner=learner,
                test_size=test_size,
                seed=seed,
                tracking_uri=tracking_uri or settings.resolved_mlflow_uri,
                experiment=experiment,
                registered_name=registered_name or settings.uplift_model_name,
            )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    promotion = result["promotion"]
    out = {
        "run_id": result["run_id"],
        **result["metrics"],
        **result["params"],
        "model": promotion.model_name,
        "version": promotion.version,
        "promoted": promotion.promoted,
        "reason": promotion.reason,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    for key, value in out.items():
        typer.echo(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
