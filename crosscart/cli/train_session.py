"""`crosscart train session`: fit a session model on click data, score it on held-out sessions, log it to
MLflow and register it (`training.sessions`); the API serves the registered model's alias."""

from __future__ import annotations

import typer

from crosscart.cli.progress import working


def train_session(
    data: str = typer.Option(..., help="events:FILE (CSV/Parquet) with the clicks."),
    model: str = typer.Option(
        "stan", help="pop, spop, sr, vsknn, stan, vstan, hybrid or auto (chooses on the training visits)."
    ),
    split: str = typer.Option("last-days:1", help="last-days:N: held-out sessions for the metric."),
    session_col: str = typer.Option(..., help="Session id column."),
    item_col: str = typer.Option(..., help="Item id column."),
    time_col: str = typer.Option(..., help="Time column: Unix seconds (float) or ISO-8601."),
    time_offset_col: str | None = typer.Option(
        None, help="Milliseconds added to --time-col (Diginetica: timeframe, on eventdate)."
    ),
    event_col: str | None = typer.Option(None, help="Event type column, to keep only --event-types."),
    event_types: str | None = typer.Option(None, help="Comma-separated event types to keep, e.g. view."),
    metric: str = typer.Option("mrr@20", help="Held-out metric deciding promotion: hr@K or mrr@K."),
    tracking_uri: str | None = typer.Option(None, help="Default: Settings.resolved_mlflow_uri."),
    registered_name: str | None = typer.Option(None, help="Default: Settings.session_model_name."),
    force_promote: bool = typer.Option(False, "--force-promote", help="Move the alias regardless."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train, evaluate (session-rec's next-item protocol), refit on all clicks, log and register."""
    import json

    from crosscart.settings import get_settings
    from training.evaluate_session import load_clicks, parse_split, split_last_days
    from training.sessions import train_session_model

    settings = get_settings()
    kinds = [t.strip() for t in event_types.split(",") if t.strip()] if event_types else None
    try:
        clicks = load_clicks(
            data, session_col=session_col, item_col=item_col, time_col=time_col, event_col=event_col,
            event_types=kinds, time_offset_col=time_offset_col,
        )  # fmt: skip
        typer.echo(clicks.report.summary(), err=True)
        train, test = split_last_days(clicks.frame, parse_split(split))
        with working(f"training {model}"):
            result = train_session_model(
                train, test, model, tracking_uri=tracking_uri or settings.resolved_mlflow_uri, metric=metric,
                registered_name=registered_name or settings.session_model_name, force_promote=force_promote,
            )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    promotion = result.promotion
    summary = {
        "run_id": result.run_id,
        "model": result.model,
        "served_model": result.served,
        "metric": result.metric,
        "value": result.value,
        "figures": result.figures,
        "registered_version": promotion.version if promotion else None,
        "promoted": promotion.promoted if promotion else False,
        "reason": promotion.reason if promotion else None,
    }
    if as_json:
        print(json.dumps(summary))
    else:
        typer.echo(
            f"{result.model}: {result.metric} = {result.value:.4f}; version {summary['registered_version']}, "
            f"{'promoted' if summary['promoted'] else 'not promoted'} ({summary['reason']})"
        )
