"""`crosscart train delivery`: fit the delivery-time model on a marketplace's shipments, check its 80%
windows on later deliveries, log it to MLflow and register it (`training.delivery`)."""

from __future__ import annotations

from pathlib import Path

import typer

from crosscart.cli.progress import working


def train_delivery(
    data: Path = typer.Option(..., "--data", exists=True, file_okay=False, help="Marketplace directory."),
    seed: int = typer.Option(0, "--seed", help="Random state of the calibration split and the trees."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Default: Settings.resolved_mlflow_uri."
    ),
    registered_name: str | None = typer.Option(
        None, "--registered-name", help="Default: Settings.delivery_model_name."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train and register the delivery-time model; the alias moves when every partner's held-out 80%
    window holds 75-85% of deliveries, or when it is better calibrated than the champion."""
    import json

    from crosscart.settings import get_settings
    from training.delivery import CALIBRATION_METRIC, train_delivery_model

    settings = get_settings()
    try:
        with working("training the delivery-time model"):
            result = train_delivery_model(
                data,
                tracking_uri=tracking_uri or settings.resolved_mlflow_uri,
                registered_name=registered_name or settings.delivery_model_name,
                random_state=seed,
            )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    promotion = result["promotion"]
    out = {
        "run_id": result["run_id"],
        CALIBRATION_METRIC: result[CALIBRATION_METRIC],
        "coverage_80": {row["partner_id"]: round(row["coverage_80"], 4) for row in result["calibration"]},
        "model": promotion.model_name,
        "version": promotion.version,
        "promoted": promotion.promoted,
        "reason": promotion.reason,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    for key, value in out.items():
        typer.echo(f"{key}: {value}")
