"""`crosscart batch-score`: every shopper's top-N from the registered recommender, and optionally every
shopper's coupon uplift from the registered uplift model, into Parquet."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import typer

from crosscart.cli.progress import working
from features.cluster import STALL_SECONDS


def batch_score(
    out: Path = typer.Option(..., help="Directory for part-*.parquet (shopper_id, rank, product_id, score)."),
    n: int = typer.Option(20, min=1, help="List length per shopper."),
    chunk_size: int = typer.Option(5_000, min=1, help="Shoppers per task (memory per task)."),
    stall_seconds: float = typer.Option(
        STALL_SECONDS,
        min=1,
        help="On a cluster, give up when no task finished for this long (above a chunk's time).",
    ),
    model: str | None = typer.Option(None, help="Registered model name (default: CROSSCART_MODEL_NAME)."),
    alias: str | None = typer.Option(None, help="Registry alias (default: CROSSCART_MODEL_ALIAS)."),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking URI (default: the setting)."),
    cluster: str | None = typer.Option(
        None, help="'local:N' or 'tcp://HOST:8786'; default: CROSSCART_DASK_SCHEDULER, else in-process."
    ),
    redis: bool = typer.Option(
        False, "--redis", help="Also publish the lists to CROSSCART_REDIS_URL (CROSSCART_PRECOMPUTED_REDIS)."
    ),
    coupons_out: Path | None = typer.Option(
        None,
        "--coupons-out",
        help="Also write every shopper's uplift per coupon kind (the registered uplift model, "
        "CROSSCART_UPLIFT_MODEL_NAME at the alias) to this directory; needs --data.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        exists=True,
        file_okay=False,
        help="Marketplace or event-log export (events/, shoppers.parquet) the coupon features come from.",
    ),
    as_of: datetime | None = typer.Option(
        None,
        "--as-of",
        help="Coupon features from events before this time (UTC); default: the marketplace's end "
        "(manifest.json), else just after the last event.",
    ),
) -> None:
    """Precompute the top-N list of every shopper the registered recommender knows (the API serves them
    when CROSSCART_PRECOMPUTED_DIR points at `--out`) and, with `--coupons-out`, every shopper's coupon
    uplift per kind (shopper_id and one column per kind, a part per shopper partition)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from crosscart.settings import get_settings

    settings = get_settings()
    if coupons_out is not None and data is None:
        typer.echo("error: --coupons-out needs --data (the events and shoppers to score)", err=True)
        raise typer.Exit(2)
    name, alias = model or settings.model_name, alias or settings.model_alias
    spec = cluster if cluster is not None else settings.dask_scheduler

    from commerce.files import staged_directory
    from features.cluster import ClusterJobFailed, dask_client
    from serving.precomputed import publish_to_redis, write_meta
    from training.batch_scoring import read_scores, score_all, write_coupon_uplift
    from training.registry import (
        ModelUnavailable,
        champion_version,
        load_recommender_version,
        registry_client,
    )
    from training.tracking import check_tracking_uri
    from training.uplift import load_uplift_model

    try:
        if coupons_out is not None:  # a bad --data or --as-of refused before anything is scored
            from training.batch_scoring import coupon_as_of

            as_of = coupon_as_of(data, as_of)
            _distinct_outputs(out, coupons_out)
        uri = check_tracking_uri(tracking_uri or settings.resolved_mlflow_uri)
        version = champion_version(registry_client(uri), name, alias)
        if version is None:
            raise ValueError(f"no version of {name!r} carries the alias {alias!r}: train and register one")
        recommender = load_recommender_version(uri, name, version.version)
        uplift = None if coupons_out is None else load_uplift_model(uri, settings.uplift_model_name, alias)
        # scored aside and swapped in whole: replicas keep the previous lists while this runs or if it
        # fails; with --coupons-out the coupon scores are staged too and published only when both are
        # written, so a damaged --data page no longer leaves new lists beside the old coupon scores
        with ExitStack() as staged:
            staging = staged.enter_context(staged_directory(out))
            coupon_staging = None
            if coupons_out is not None:
                coupon_staging = staged.enter_context(staged_directory(coupons_out))
            with dask_client(spec) as client, working("scoring every shopper"):
                score_all(
                    recommender,
                    staging,
                    n=n,
                    chunk_size=chunk_size,
                    client=client,
                    stall_seconds=stall_seconds,
                )
            write_meta(staging, name, version.version, n)  # the API serves the lists for this version only
            if coupon_staging is not None:
                with working("scoring every shopper's coupon uplift"):
                    write_coupon_uplift(uplift, data, coupon_staging, as_of=as_of)
        path = out
    except (ValueError, FileNotFoundError, ModelUnavailable, ClusterJobFailed) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if redis:
        if not settings.redis_url:
            typer.echo("error: --redis needs CROSSCART_REDIS_URL", err=True)
            raise typer.Exit(1)
        parts = publish_to_redis(path, settings.redis_url)
        typer.echo(f"published {parts} parts to Redis")
    scores = read_scores(path)
    typer.echo(
        f"{name}@{alias} (version {version.version}): {scores['shopper_id'].nunique():,} shoppers, "
        f"{len(scores):,} rows -> {path}"
    )
    if coupons_out is not None:
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in coupons_out.glob("part-*.parquet"))
        typer.echo(
            f"{settings.uplift_model_name}@{alias} coupon uplift as of {pd.Timestamp(as_of)}: "
            f"{rows:,} shoppers -> {coupons_out}"
        )


def _distinct_outputs(out: Path, coupons_out: Path) -> None:
    """The lists and the coupon scores are two directories, neither inside the other: one published
    over the other would replace it."""
    a, b = out.resolve(), coupons_out.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise ValueError(f"--out {out} and --coupons-out {coupons_out} must be separate directories")
