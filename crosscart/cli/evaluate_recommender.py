"""`crosscart evaluate recommender`: (being built)."""

import typer


def evaluate_recommender() -> None:
    """Placeholder until the owner of this command lands it."""
    raise typer.Exit(1)
