"""`crosscart evaluate recommender`: offline ranking metrics for any registered recommender."""

from __future__ import annotations

import typer

DEFAULT_MODELS = "popularity,itemknn,als,bpr,ease,ranker"


def evaluate_recommender(
    data: str = typer.Option(
        ..., help="movielens:PATH/u.data | events:FILE (CSV/Parquet) | synthetic:DIR (generated marketplace)"
    ),
    split: str = typer.Option(
        "stratified-item:0.75:42",
        help="stratified-item:RATIO:SEED | random-user:RATIO:SEED | temporal:QUANTILE | leave-last:N",
    ),
    k: int = typer.Option(10, min=1, help="List length; metric names carry it (ndcg@10)."),
    models: str = typer.Option(DEFAULT_MODELS, help="Comma-separated registry names."),
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per model per line."),
    user_col: str | None = typer.Option(None, help="events: the user id column."),
    item_col: str | None = typer.Option(None, help="events: the item id column."),
    time_col: str | None = typer.Option(
        None, help="events: time column (unix seconds, ISO-8601, or a common layout, guessed)."
    ),
    time_format: str | None = typer.Option(
        None, help="events: time layout in strftime codes, e.g. '%d/%m/%Y %H:%M' (default: guessed)."
    ),
    event_col: str | None = typer.Option(
        None, help="events: event type column (view/cart/favorite/purchase)."
    ),
    value_col: str | None = typer.Option(None, help="events: value column; negative values are returns."),
    weights: str | None = typer.Option(
        None, help="Training weight per event type, e.g. view=1,cart=3,purchase=5 (default: built-in)."
    ),
    half_life_days: float | None = typer.Option(None, help="Time-decay half-life of training weights."),
    include_seen: bool = typer.Option(
        False,
        "--include-seen",
        help="Keep items the shopper had in train as recommendations and targets (repeat purchases);"
        " metrics are also split into repeat_* and explore_* parts.",
    ),
) -> None:
    """Split the data, fit each model on train, score top-k lists on test (seen items excluded unless
    --include-seen).

    Cold test users get whatever the model returns (an empty list is not scored).

    Malformed-row counts and split sizes go to stderr.
    """
    import json
    import sys

    from rich.console import Console

    from crosscart.cli.progress import progress_callback
    from training.evaluate_recommender import evaluate_models, load_dataset, prepare

    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one model name", param_hint="--models")
    event_weights = _parse_weights(weights) if weights else None
    try:
        dataset = load_dataset(
            data, user_col=user_col, item_col=item_col, time_col=time_col, event_col=event_col,
            value_col=value_col, time_format=time_format,
        )  # fmt: skip
        typer.echo(dataset.report.summary(), err=True)
        setup = prepare(
            dataset,
            split,
            event_weights=event_weights,
            half_life_days=half_life_days,
            include_seen=include_seen,
        )
        train = setup.train
        typer.echo(
            f"train: {train.n_users} users x {train.n_items} items, {train.matrix.nnz} pairs;"
            f" test users: {len(setup.relevant)} ({setup.n_cold_users} cold);"
            f" repeat test pairs {'relevant' if include_seen else 'not relevant'}: {setup.n_test_pairs_seen}",
            err=True,
        )
        rows = []
        # the bar goes to stderr so that stdout stays one JSON object per line
        with progress_callback(Console(stderr=True), f"fitting {names[0]}") as report:
            report(f"fitting {names[0]}", 0, len(names))
            for done, row in enumerate(evaluate_models(names, setup, k), start=1):
                if json_lines:
                    print(json.dumps(row), flush=True)
                rows.append(row)
                upcoming = f"fitting {names[done]}" if done < len(names) else "done"
                report(upcoming, done, len(names))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not json_lines:
        _print_table(rows, k, file=sys.stdout, include_seen=include_seen)


def _parse_weights(text: str) -> dict[str, float]:
    weights = {}
    for part in text.split(","):
        kind, _, value = (piece.strip() for piece in part.partition("="))
        try:
            weights[kind] = float(value)  # float("") fails too: a part without "="
        except ValueError:
            kind = ""
        if not kind:
            raise typer.BadParameter(f"expected TYPE=NUMBER, got {part!r}", param_hint="--weights")
    return weights


def _print_table(rows: list[dict], k: int, file, include_seen: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = [
        "map", f"ndcg@{k}", f"precision@{k}", f"recall@{k}", f"hit_rate@{k}", f"mrr@{k}", "coverage",
        "novelty", "diversity", "popularity_percentile", "n_users", "fit_seconds", "predict_seconds",
    ]  # fmt: skip
    if include_seen:
        columns[5:5] = [f"{part}_{m}@{k}" for part in ("repeat", "explore") for m in ("ndcg", "recall")]
    table = Table(title=f"Recommenders at k={k}" + (" (seen items included)" if include_seen else ""))
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        table.add_row(row["model"], *cells)
    Console(file=file, width=220).print(table)
