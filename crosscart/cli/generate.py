"""`crosscart generate`: write a synthetic marketplace (catalog, shoppers, events, campaigns, truth)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer


class ScaleName(StrEnum):
    tiny = "tiny"
    demo = "demo"
    large = "large"


def generate(
    scale: ScaleName = typer.Option(ScaleName.demo, help="tiny (tests), demo (~1M events) or large (~50M)."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
    out: Path = typer.Option(..., help="Output directory, replaced whole when written."),
    parts: int | None = typer.Option(None, min=1, help="Stop after this many shopper blocks (a slice)."),
    load_db: bool = typer.Option(
        False, "--load-db", help="Then migrate the configured database and load it (as `crosscart db load`)."
    ),
) -> None:
    """Generate the marketplace described in docs/data-contracts.md."""
    from rich.console import Console

    from crosscart.cli.progress import progress_callback
    from features.synth import generate_marketplace

    console = Console()
    try:
        with progress_callback(console, "generate") as report:
            manifest = generate_marketplace(out, scale.value, seed, max_parts=parts, progress=report)
    except FileExistsError as exc:  # --out names a directory of other files: nothing was written
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    console.print(
        f"wrote {out}: {manifest['counts']['events']:,} events, "
        f"{manifest['counts']['shoppers.parquet']:,} shoppers, "
        f"{manifest['counts']['products.parquet']:,} products"
    )
    if load_db:
        from crosscart.cli.db import load

        load(out, events="purchases")  # migrates the configured database, then load_marketplace
