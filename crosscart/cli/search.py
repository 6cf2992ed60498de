"""`crosscart search`: build the search index, simulate search logs; `crosscart evaluate search`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Product search: index and search logs.", no_args_is_help=True)


@app.command("reindex")
def reindex() -> None:
    """Make the configured index (CROSSCART_SEARCH_BACKEND: postgresql, or an fts5 file) hold every
    sellable product. The API also does this at start-up and on each refresh; this is the explicit build.
    The default `memory` index lives in each API process: here it is only built and timed."""
    import json
    import time

    from commerce.db import make_engine, make_session_factory
    from commerce.search.documents import rebuild
    from commerce.search.index import open_index
    from crosscart.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    index = open_index(settings.search_backend, engine=engine, path=settings.search_index_path)
    started = time.perf_counter()
    with make_session_factory(engine)() as session:
        counts = rebuild(index, session)
    counts["seconds"] = round(time.perf_counter() - started, 2)
    typer.echo(json.dumps({"backend": index.backend, **counts}))


@app.command("simulate-logs")
def simulate_logs(
    data: Path = typer.Option(..., help="A generated marketplace directory (crosscart generate)."),
    seed: int = typer.Option(0),
    randomized_share: float | None = typer.Option(
        None, min=0.01, max=1.0, help="Share of searches whose page is shown in random order [default: 0.1]."
    ),
    trust_bias: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Clicks from trust in the order: probability trust_bias / position."
    ),
) -> None:
    """Write DATA/search_logs.parquet: shown results with positions, clicks, carts and purchases."""
    from features.synth.search_logs import simulate_search_logs

    share = {} if randomized_share is None else {"randomized_share": randomized_share}
    try:
        log = simulate_search_logs(data, seed=seed, trust_bias=trust_bias, **share)
    except FileNotFoundError as exc:  # --data is no generated marketplace
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"{log['search_id'].nunique()} searches, {len(log)} shown results -> {data / 'search_logs.parquet'}"
    )


def evaluate_search(
    data: Path = typer.Option(
        ..., help="A generated marketplace directory (search logs simulated if absent)."
    ),
    holdout_weeks: int = typer.Option(2, min=1, help="The last N weeks are held out."),
    k: int = typer.Option(10, min=1, help="List length; metric names carry it (ndcg@10)."),
    seed: int = typer.Option(0),
    save_ranker: Path | None = typer.Option(
        None, help="Write the debiased ranker here (joblib) for the API (CROSSCART_SEARCH_RANKER_PATH)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train the search ranker (with and without position-bias correction) on the weeks before the split
    and compare it with BM25 alone and popularity within the matches on the held-out weeks:
    nDCG@k and MRR on the randomized slice, plus the ratios."""
    import json

    from rich.console import Console
    from rich.table import Table

    from crosscart.cli.progress import progress_callback
    from training.evaluate_search import evaluate_search as run

    console = Console(stderr=True)
    try:
        with progress_callback(console, "evaluate search") as report:
            result = run(
                data, holdout_weeks=holdout_weeks, k=k, seed=seed, save_ranker=save_ranker, progress=report
            )
    except (FileNotFoundError, ValueError) as exc:  # --data is no generated marketplace; a split too late
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"held-out randomized slice ({result['test_searches']} held-out searches)")
    truth = result.get("true_relevance")
    for col in ("method", f"ndcg@{k}", "mrr", "searches", *([f"true ndcg@{k}"] if truth else [])):
        table.add_column(col)
    for method, m in result["randomized_slice"].items():
        true = [f"{truth[f'ndcg@{k}'][method]:.4f}"] if truth else []
        table.add_row(method, f"{m[f'ndcg@{k}']:.4f}", f"{m['mrr']:.4f}", str(m["searches"]), *true)
    Console().print(table)
    for name, value in result["ratios"].items():
        typer.echo(f"{name}: {value:.3f}" if value is not None else f"{name}: n/a")
    ci = result[f"debiased_minus_no_debias_ndcg@{k}"]
    typer.echo(
        f"clicks, debiased - no debias ndcg@{k}: {ci['mean']:+.4f}, "
        f"95% CI over queries [{ci['ci95_low']:.4f}, {ci['ci95_high']:.4f}]"
    )
    for name in ("true_relevance", "true_relevance_all_traffic"):
        if name in result:
            r, ci = result[name], result[name][f"debiased_minus_no_debias_ndcg@{k}"]
            typer.echo(
                f"{name} ({r['searches']} searches), debiased_vs_no_debias_ndcg@{k}: "
                f"{r[f'debiased_vs_no_debias_ndcg@{k}']:.3f} (difference {ci['mean']:+.4f}, "
                f"95% CI [{ci['ci95_low']:.4f}, {ci['ci95_high']:.4f}])"
            )
    if result.get("true_examination"):
        pairs = zip(result["position_propensity"], result["true_examination"], strict=True)
        typer.echo("position propensity, estimated / simulated: " + " ".join(f"{e}/{t}" for e, t in pairs))
