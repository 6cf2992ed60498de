"""`crosscart serve`: (being built)."""

import typer


def serve() -> None:
    """Placeholder until the owner of this command lands it."""
    raise typer.Exit(1)
