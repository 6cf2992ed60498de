"""`crosscart features`: feature tables and point-in-time training sets over a generated marketplace."""

from __future__ import annotations

from pathlib import Path

import typer

from commerce.files import atomic_path
from crosscart.cli.progress import working
from features.cluster import STALL_SECONDS

app = typer.Typer(help="Feature tables and point-in-time training sets.", no_args_is_help=True)


def _time(value: str | None) -> str | None:
    """Refuse an `--as-of` that is no time before any work (it ended in pandas' DateParseError traceback)."""
    if value is not None:
        import pandas as pd

        try:
            pd.Timestamp(value)
        except ValueError as exc:
            raise typer.BadParameter(
                f"{value!r} is no time ({exc}); give one as 2026-06-01T12:00:00"
            ) from None
    return value


AS_OF = typer.Option(None, callback=_time, help="Use only events before this time (default: all).")


@app.command("build")
def build(
    data: Path = typer.Option(..., help="A `crosscart generate` output directory."),
    out: Path = typer.Option(..., help="Where shopper_features.parquet and product_features.parquet go."),
    as_of: str | None = AS_OF,
) -> None:
    """Shopper and product feature tables as of a time."""
    from features.tables import build_feature_tables

    try:
        with working("building feature tables"):
            paths = build_feature_tables(data, out, as_of)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


@app.command("price-sensitivity")
def price_sensitivity(
    data: Path = typer.Option(..., help="A `crosscart generate` output directory."),
    out: Path = typer.Option(..., help="Output Parquet file (shopper_id + the estimates)."),
    as_of: str | None = AS_OF,
    search_logs: bool = typer.Option(
        True, help="Also fit the search-click slope when DATA/search_logs.parquet exists."
    ),
) -> None:
    """Each shopper's price sensitivity from choice data: the view -> cart price slope, the brand
    price tilt of their views and (with search logs) the search-click price slope, shrunk by
    empirical Bayes (docs/marketing.md)."""
    import json

    from features.price_sensitivity import build_price_sensitivity

    try:
        with working("estimating price sensitivity"):
            summary = build_price_sensitivity(data, out, as_of, search_logs=search_logs)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(summary))


@app.command("job")
def job(
    data: Path = typer.Option(
        ..., help="A `crosscart generate` output directory (its events/ Parquet parts)."
    ),
    out: Path = typer.Option(..., help="Where interactions/, shopper_features/, product_features/ go."),
    as_of: str | None = AS_OF,
    cluster: str | None = typer.Option(
        None,
        help="'local:N' (a LocalCluster of N workers) or 'tcp://HOST:8786'; "
        "default: CROSSCART_DASK_SCHEDULER, else in-process.",
    ),
    partitions: int | None = typer.Option(None, min=1, help="Shopper partitions (default: event parts)."),
    half_life_days: float | None = typer.Option(None, help="Time decay of interaction weights."),
    labels: Path | None = typer.Option(
        None, help="Parquet labels (shopper_id, product_id, label_ts, label): also write training_set/."
    ),
    snapshot_freq: str = typer.Option("1D", help="Training-set snapshot granularity, or 'exact'."),
    stall_seconds: float = typer.Option(
        STALL_SECONDS, min=1, help="On a cluster, give up when no task finished for this long."
    ),
) -> None:
    """Out-of-core feature job on Dask: interactions, feature tables and (with --labels) a point-in-time
    training set, as partitioned Parquet."""
    from crosscart.settings import get_settings
    from features.cluster import ClusterJobFailed, dask_client
    from features.distributed import run_feature_job, run_training_set
    from features.tables import check_label_window
    from features.training_sets import read_labels

    spec = cluster if cluster is not None else get_settings().dask_scheduler
    try:
        if labels is not None:  # refused before the feature job publishes anything
            label_rows = read_labels(labels)
            check_label_window(data, label_rows, labels)
        with dask_client(spec) as client, working("running the feature job"):
            paths = run_feature_job(
                data,
                out,
                as_of=as_of,
                client=client,
                partitions=partitions,
                half_life_days=half_life_days,
                stall_seconds=stall_seconds,
            )
            if labels is not None:
                paths["training_set"] = run_training_set(
                    data,
                    label_rows,
                    out / "training_set",
                    client=client,
                    partitions=partitions,
                    snapshot_freq=None if snapshot_freq == "exact" else snapshot_freq,
                    stall_seconds=stall_seconds,
                )
    except (FileNotFoundError, ValueError, ClusterJobFailed) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for name, path in paths.items():
        typer.echo(f"{name}: {path} ({len(list(path.glob('*.parquet')))} parts)")


@app.command("training-set")
def training_set(
    data: Path = typer.Option(..., help="A `crosscart generate` output directory."),
    labels: Path = typer.Option(..., help="Parquet with shopper_id, product_id, label_ts, label."),
    out: Path = typer.Option(..., help="Output Parquet file."),
    snapshot_freq: str = typer.Option("1D", help="Snapshot granularity (pandas offset), or 'exact'."),
) -> None:
    """Join labels to features computed strictly before each label (point in time)."""
    from features.tables import check_label_window, read_marketplace
    from features.training_sets import read_labels
    from features.training_sets import training_set as build_training_set

    try:
        m = read_marketplace(data)
        label_rows = read_labels(labels)
        check_label_window(data, label_rows, labels)
        with working("building the training set"):
            table = build_training_set(
                label_rows,
                m["events"],
                m["products"],
                shoppers=m["shoppers"],
                categories=m["categories"],
                snapshot_freq=None if snapshot_freq == "exact" else snapshot_freq,
            )
    except (FileNotFoundError, ValueError) as exc:  # a missing input or labels without the contract's columns
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    typer.echo(f"{len(table):,} rows x {table.shape[1]} columns -> {out}")
