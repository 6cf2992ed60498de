"""`crosscart generate`: (being built)."""

import typer


def generate() -> None:
    """Placeholder until the owner of this command lands it."""
    raise typer.Exit(1)
