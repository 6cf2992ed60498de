"""`crosscart serve`: run the API with uvicorn."""

from __future__ import annotations

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it local."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each loads its own models and catalog)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the CrossCart API (settings from CROSSCART_* variables; docs at /docs)."""
    import uvicorn

    from crosscart.settings import get_settings
    from serving.http import PROTOCOL

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        http=PROTOCOL,  # request headers must be complete within the timeout below
        timeout_keep_alive=max(1, round(get_settings().header_timeout_seconds)),
    )
