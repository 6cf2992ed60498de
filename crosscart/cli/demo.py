"""`crosscart demo`: (being built)."""

import typer


def demo() -> None:
    """Placeholder until the owner of this command lands it."""
    raise typer.Exit(1)
