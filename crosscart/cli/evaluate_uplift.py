"""`crosscart evaluate uplift`: score uplift models on any randomised campaign CSV."""

from __future__ import annotations

from pathlib import Path

import typer

from crosscart.cli.progress import working


def evaluate_uplift(
    data: Path = typer.Option(
        ..., "--data", exists=True, dir_okay=False, help="Campaign CSV, one row per unit."
    ),
    treatment_col: str = typer.Option(..., "--treatment-col", help="Column naming each row's arm."),
    treatment_value: str = typer.Option(
        ..., "--treatment-value", help="Treated value(s); several, comma-separated, are pooled into one."
    ),
    control_value: str = typer.Option(..., "--control-value", help="Control value(s), comma-separated."),
    outcome_col: str = typer.Option(..., "--outcome-col", help="Outcome: 0/1 (visit) or continuous (spend)."),
    feature_cols: str = typer.Option(
        "",
        "--feature-cols",
        help="Comma-separated features; default: all other columns except outcome-like ones.",
    ),
    split: str = typer.Option("0.5:42", "--split", help="TEST_SHARE:SEED of the stratified split."),
    models: str = typer.Option(
        "auto,blend,s,t,ct,si-lr",
        "--models",
        help="Comma-separated model keys (models.uplift.selection.MODEL_KEYS), e.g. "
        "s,t,x,dr,ct,s-lr,si-lr,t-lr,x-lr,ct-lr,s-2p,s-lr-2p,funnel,funnel-2p,ens,blend,funnel-blend,auto,"
        "auto-nested.",
    ),
    baselines: bool = typer.Option(
        True,
        "--baselines/--no-baselines",
        help="Also score scikit-uplift's S, T and class-transformation models and report each model's "
        "gap to the best of them.",
    ),
    plots: Path | None = typer.Option(None, "--plots", help="Directory for Qini/uplift/calibration PNGs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per model per line."),
) -> None:
    """Fit each model on the train part of a stratified split and print its test-set uplift metrics,
    beside scikit-uplift's own models (rows `sklift-*`) and each model's gap to the best of them.

    Rows whose treatment value is neither a treatment nor a control value are left out. String columns
    are one-hot encoded. Example (Hillstrom, any e-mail versus none):
    --treatment-col segment --treatment-value "Mens E-Mail,Womens E-Mail" --control-value "No E-Mail"
    --outcome-col visit
    """
    import json
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from models.uplift.selection import MODEL_KEYS, takes_gate
    from training.evaluate_uplift import (
        MAX_TEXT_LEVELS,
        evaluate_models,
        load_campaign,
        parse_split,
        split_campaign,
    )

    keys = [k.strip() for k in models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODEL_KEYS]
    try:
        if not keys or unknown:
            raise ValueError(
                f"unknown models {unknown or '(none given)'}; choose from {', '.join(MODEL_KEYS)}"
            )
        test_size, seed = parse_split(split)
        cols = [c.strip() for c in feature_cols.split(",") if c.strip()] or None
        campaign = load_campaign(data, treatment_col, treatment_value, control_value, outcome_col, cols)
        train, test = split_campaign(campaign, test_size, seed)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if campaign.dropped:
        typer.echo(f"left out as outcome-like columns: {', '.join(campaign.dropped)}", err=True)
    if campaign.too_many_levels:
        typer.echo(
            f"left out as text with over {MAX_TEXT_LEVELS} distinct values (ids, times):"
            f" {', '.join(campaign.too_many_levels)}",
            err=True,
        )
    if campaign.gate_col and any(takes_gate(k) for k in keys):
        typer.echo(f"gate of the funnel candidate (met before the outcome): {campaign.gate_col}", err=True)
    with working("fitting and scoring uplift models"):
        rows = evaluate_models(train, test, keys, random_state=seed, plots_dir=plots, baselines=baselines)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    metrics = ["qini_auc", "auuc", "uplift@30", "uplift@10", "uplift@30_by_group"]
    table = Table(title=f"uplift on {len(test.outcome)} test rows (train {len(train.outcome)})")
    gaps = ["qini_auc", "uplift@30"] if baselines else []
    for col in ["model", *metrics, *(f"{m} - best sklift (se)" for m in gaps)]:
        table.add_column(col)
    for row in rows:
        name = f"{row['model']} ({row['chosen']})" if "chosen" in row else row["model"]
        vs = row.get("vs_baselines", {})
        cells = [f"{vs[m]['gap']:+.4f} ({vs[m]['gap_se']:.4f})" if m in vs else "" for m in gaps]
        table.add_row(name, *(f"{row[m]:.4f}" for m in metrics), *cells)
    Console().print(table)
