"""`crosscart evaluate session`: session-rec's next-item protocol for the session models."""

from __future__ import annotations

import typer

DEFAULT_MODELS = "pop,spop,sr,vsknn,stan,vstan,auto"


def evaluate_session(
    data: str = typer.Option(..., help="events:FILE (CSV/Parquet) with the training clicks."),
    test: str | None = typer.Option(None, help="events:FILE with the test clicks (else --split)."),
    split: str | None = typer.Option(
        None, help="last-days:N: sessions ending in the data's last N days are test (default last-days:1)."
    ),
    session_col: str = typer.Option(..., help="Session id column."),
    item_col: str = typer.Option(..., help="Item id column."),
    time_col: str = typer.Option(..., help="Time column: Unix seconds (float) or ISO-8601."),
    time_format: str | None = typer.Option(None, help="Another time layout in strftime codes."),
    time_offset_col: str | None = typer.Option(
        None, help="Milliseconds added to --time-col (Diginetica: timeframe, on eventdate)."
    ),
    event_col: str | None = typer.Option(None, help="Event type column, to keep only --event-types."),
    event_types: str | None = typer.Option(None, help="Comma-separated event types to keep, e.g. view."),
    k: int = typer.Option(20, min=1, help="List length; metric names carry it (hr@20)."),
    models: str = typer.Option(
        DEFAULT_MODELS, help="Comma-separated session models (also hybrid: VSTAN + sequential rules)."
    ),
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per model per line."),
) -> None:
    """Fit each model on the training sessions; predict every next click of each test session (2+ clicks
    on training items) from its prefix; report HR and MRR at k and 10, fit time and p99 predict time."""
    import json
    import sys

    from training.evaluate_session import (
        evaluate_session_models,
        load_clicks,
        parse_split,
        split_last_days,
    )

    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one model name", param_hint="--models")
    if test and split:
        raise typer.BadParameter("give either --test or --split, not both", param_hint="--split")
    kinds = [t.strip() for t in event_types.split(",") if t.strip()] if event_types else None
    columns = dict(
        session_col=session_col, item_col=item_col, time_col=time_col, event_col=event_col,
        time_offset_col=time_offset_col,
    )  # fmt: skip
    try:
        clicks = load_clicks(data, **columns, event_types=kinds, time_format=time_format)
        typer.echo(clicks.report.summary(), err=True)
        if test:
            held_out = load_clicks(test, **columns, event_types=kinds, time_format=time_format)
            typer.echo(held_out.report.summary(), err=True)
            train_frame, test_frame = clicks.frame, held_out.frame
        else:
            train_frame, test_frame = split_last_days(clicks.frame, parse_split(split or "last-days:1"))
        if train_frame.empty or test_frame.empty:
            raise ValueError("the split leaves no training or no test clicks")
        typer.echo(f"train clicks: {len(train_frame)}; test clicks: {len(test_frame)}", err=True)
        rows = []
        for row in evaluate_session_models(names, train_frame, test_frame, k):
            if json_lines:
                print(json.dumps(row), flush=True)
            rows.append(row)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not json_lines:
        _print_table(rows, file=sys.stdout)


def _print_table(rows: list[dict], file) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = [c for c in rows[0] if c not in ("model", "chosen")]
    table = Table(title="Session models, next-item prediction")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["model"], *(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
        )
    console = Console(file=file, width=200)
    console.print(table)
    for row in rows:
        if "chosen" in row:
            console.print(f"{row['model']} chose {row['chosen']['model']} {row['chosen']['params']}")
