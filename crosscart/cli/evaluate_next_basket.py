"""`crosscart evaluate next-basket`: predict each test shopper's last basket from their history."""

from __future__ import annotations

import typer

DEFAULT_MODELS = "popularity,personal-topfreq,gp-topfreq,tifuknn"


def evaluate_next_basket(
    data: str = typer.Option(..., help="events:FILE (CSV/Parquet) | synthetic:DIR (generated marketplace)"),
    split: str = typer.Option(
        "last-basket:0.2:42", help="last-basket:SHARE:SEED: a random SHARE of shoppers are test shoppers."
    ),
    k: int = typer.Option(10, min=1, help="List length; metric names carry it (recall@10)."),
    models: str = typer.Option(DEFAULT_MODELS, help="Comma-separated registry names."),
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per model per line."),
    user_col: str | None = typer.Option(None, help="events: the shopper id column."),
    item_col: str | None = typer.Option(None, help="events: the item id column."),
    basket_col: str | None = typer.Option(None, help="events: the basket (order, transaction) id column."),
    time_col: str | None = typer.Option(
        None, help="events: time column; without it baskets are ordered by the basket column."
    ),
    time_format: str | None = typer.Option(
        None, help="events: time layout in strftime codes, e.g. '%d/%m/%Y %H:%M' (default: guessed)."
    ),
    value_col: str | None = typer.Option(
        None, help="events: quantity column; negative and zero rows (returns) are dropped."
    ),
    orders: str | None = typer.Option(
        None,
        help="events: a file with one row per basket holding the user (and time) columns, joined to the"
        " order lines of FILE on --basket-col (Instacart: orders.csv beside order_products__prior.csv).",
    ),
) -> None:
    """Fit each model on all history and score its top-k list against each test shopper's last basket
    (past items allowed): recall, nDCG, PHR, and recall on the repeat and the explore part.

    Malformed-row counts and split sizes go to stderr.
    """
    import json
    import sys

    from training.next_basket import evaluate_next_basket_models, load_basket_data, prepare_next_basket

    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one model name", param_hint="--models")
    try:
        dataset = load_basket_data(
            data, user_col=user_col, item_col=item_col, basket_col=basket_col, time_col=time_col,
            time_format=time_format, value_col=value_col, orders=orders,
        )  # fmt: skip
        typer.echo(dataset.report.summary(), err=True)
        setup = prepare_next_basket(dataset, split)
        if setup.n_not_purchases:
            typer.echo(
                f"left out {setup.n_not_purchases} rows whose {value_col or 'quantity'} is zero or negative"
                " (no purchase)",
                err=True,
            )
        typer.echo(
            f"{setup.n_shoppers} shoppers ({setup.n_eligible} with 2+ baskets), {setup.n_baskets} baskets;"
            f" test shoppers: {len(setup.targets)}; train: {setup.train.n_users} x {setup.train.n_items}",
            err=True,
        )
        rows = []
        for row in evaluate_next_basket_models(names, setup, k):
            if json_lines:
                print(json.dumps(row), flush=True)
            else:
                typer.echo(f"fitted {row['model']} in {row['fit_seconds']:.1f}s", err=True)
            rows.append(row)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not json_lines:
        _print_table(rows, k, file=sys.stdout)


def _print_table(rows: list[dict], k: int, file) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = [
        f"recall@{k}", f"ndcg@{k}", f"phr@{k}", f"repeat_recall@{k}", f"explore_recall@{k}",
        f"repeat_share@{k}", "n_users", "fit_seconds",
    ]  # fmt: skip
    table = Table(title=f"Next basket at k={k}")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["model"], *(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
        )
    Console(file=file, width=200).print(table)
