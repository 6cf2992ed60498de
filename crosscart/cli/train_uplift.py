"""`crosscart train uplift`: (being built)."""

import typer


def train_uplift() -> None:
    """Placeholder until the owner of this command lands it."""
    raise typer.Exit(1)
