"""`crosscart serve`: run the API with uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import typer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it local."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each loads its own models and catalog)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the CrossCart API (settings from CROSSCART_* variables; docs at /docs). With several workers,
    Prometheus metrics run in multiprocess mode, so /metrics from any worker counts them all."""
    import uvicorn

    from crosscart.settings import get_settings

    made = None
    if workers > 1:
        made = _multiprocess_metrics_dir()
    try:
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            **uvicorn_options(get_settings()),
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def uvicorn_options(settings) -> dict:
    """How `crosscart serve` configures uvicorn (tests run the app with the same)."""
    from serving.http import PROTOCOL

    return {
        "access_log": False,
        "http": PROTOCOL,  # httptools (or h11) + serving.http: headers complete within the timeout below
        "timeout_keep_alive": max(1, round(settings.header_timeout_seconds)),
        # uvicorn waits for requests in flight with no limit by default: one client that never finished
        # its body held SIGTERM until the orchestrator killed the process, before the app's shutdown wrote
        # what its background writers held
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }


def _multiprocess_metrics_dir() -> Path | None:
    """Point prometheus_client's multiprocess mode at an empty directory, inherited by the workers: the
    one named by PROMETHEUS_MULTIPROC_DIR (emptied of an earlier run's files), else a new temporary one
    (returned, to be removed at exit)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    path = Path(tempfile.mkdtemp(prefix="crosscart-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path
