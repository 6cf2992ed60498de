"""`crosscart evaluate forecast`: demand forecasters on any sales file, rolling-origin split."""

from __future__ import annotations

import typer

DEFAULT_MODELS = "seasonal_naive,naive,window_average,auto_ets,croston_sba,imapa,ensemble,calendar_level"


def evaluate_forecast(
    data: str = typer.Option(..., help="events:FILE (CSV or Parquet; one row per sale line)"),
    item_col: str = typer.Option(..., help="The item (product, SKU) column."),
    time_col: str | None = typer.Option(None, help="Sale time (unix seconds, ISO-8601, or a common layout)."),
    quantity_col: str | None = typer.Option(None, help="Units sold; negative values (returns) net out."),
    first_day: str | None = typer.Option(
        None,
        help="The date of day 1: of a wide table (a column d_1, d_2, ... per day, as M5: 2011-01-29), given"
        " instead of --time-col and --quantity-col; or with them, of a --time-col counting days (dunnhumby's"
        " DAY).",
    ),
    time_format: str | None = typer.Option(
        None, help="Time layout in strftime codes, e.g. '%m/%d/%Y %H:%M' (default: guessed)."
    ),
    sep: str | None = typer.Option(None, help="CSV delimiter (default: found from the header line)."),
    freq: str = typer.Option("W", help="Period: D, W, M (or a pandas alias such as W-MON)."),
    horizon: int = typer.Option(4, min=1, help="Periods forecast from each cutoff."),
    windows: int = typer.Option(3, min=1, help="Rolling-origin test windows of `horizon` periods each."),
    min_train: int | None = typer.Option(
        None, help="Periods of history an item needs before the first cutoff (default max(2h+1, 8))."
    ),
    models: str = typer.Option(DEFAULT_MODELS, help="Comma-separated forecaster names."),
    events_calendar: str | None = typer.Option(
        None,
        help="CSV or Parquet of known promotion windows (columns start, end; end exclusive), a future"
        " regressor for lightgbm and calendar_level.",
    ),
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per model per line."),
) -> None:
    """Sum sales per item and period, then score each forecaster from rolling origins.

    Prints mase (below 1 beats the in-sample seasonal naive), smape (percent) and coverage@80 (share of
    actuals inside the 80% interval) per model. What was read and dropped goes to stderr.
    """
    import json

    from features.loaders import load_sales, load_wide_sales
    from features.sales import demand_series, load_event_calendar
    from training.evaluate_forecast import evaluate_forecasters

    kind, _, path = data.partition(":")
    if kind != "events" or not path:
        raise typer.BadParameter("expected events:FILE", param_hint="--data")
    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one model name", param_hint="--models")
    long = time_col is not None and quantity_col is not None
    if (time_col is None) != (quantity_col is None) or not (long or first_day):
        raise typer.BadParameter(
            "give --time-col and --quantity-col, or --first-day for a wide table", param_hint="--first-day"
        )
    try:
        if not long:
            sales, report = load_wide_sales(path, item_col=item_col, first_day=first_day, sep=sep)
        else:
            sales, report = load_sales(
                path, item_col=item_col, time_col=time_col, quantity_col=quantity_col, sep=sep,
                time_format=time_format, first_day=first_day,
            )  # fmt: skip
        typer.echo(report.summary(), err=True)
        calendar = load_event_calendar(events_calendar) if events_calendar else []
        series = demand_series(sales, freq)
        rows, summary = evaluate_forecasters(
            series, names, freq=freq, horizon=horizon, n_windows=windows, min_train=min_train,
            event_windows=calendar,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{summary['n_series']} items forecast ({summary['n_series_too_short']} with too little history),"
        f" season length {summary['season_length']},"
        f" {windows} windows x {horizon} periods of {summary['freq']}",
        err=True,
    )
    for row in rows:
        if json_lines:
            print(json.dumps(row), flush=True)
        else:
            typer.echo(
                f"{row['model']:>15}  mase {row['mase']:.4f}  smape {row['smape']:.2f}"
                f"  coverage@80 {row['coverage@80']:.3f}  fit {row['fit_seconds']:.1f}s"
            )
