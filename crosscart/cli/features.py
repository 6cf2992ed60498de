"""`crosscart features`: (being built)."""

import typer

app = typer.Typer(help="features commands (being built).", no_args_is_help=True)


@app.command("todo")
def _todo() -> None:
    """Placeholder until the owner of this group lands it."""
    raise typer.Exit(1)
