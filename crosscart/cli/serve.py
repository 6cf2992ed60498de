"""`crosscart serve`: run the API with uvicorn."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

import typer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it local."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each loads its own models and catalog)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the CrossCart API (settings from CROSSCART_* variables; docs at /docs). With several workers,
    Prometheus metrics run in multiprocess mode, so /metrics from any worker counts them all."""
    require_free_port(host, port)
    require_finished_demo_load()
    import uvicorn

    from crosscart.settings import get_settings
    from serving.http import server_options

    made = None
    if workers > 1:
        made = _multiprocess_metrics_dir()
    _share_generated_secrets()
    settings = get_settings()
    try:
        uvicorn.run(
            "serving.app:served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
            **server_options(
                settings.header_timeout_seconds, settings.forwarded_allow_ips, settings.shutdown_grace_seconds
            ),
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    # Stopped (Ctrl-C): the app has shut down, its threads joined and its database engine disposed. What
    # is left on the heap (every library imported, the models' and catalog's objects) lives until the
    # process ends; frozen, Python's finalisation skips its full garbage collections over it: they held
    # the prompt 5-9 s after uvicorn's last line (1.8 s of CPU after a tiny demo, docs/operations.md).
    gc.freeze()


#: Secrets that, left empty, are random: one per `crosscart serve`, so all its workers sign and verify alike.
GENERATED_SECRETS = ("CROSSCART_ADS_TOKEN_SECRET", "CROSSCART_CONSOLE_SECRET")


def _share_generated_secrets() -> None:
    """Give every secret left empty one random value in the environment the workers inherit (each
    worker would otherwise draw its own: impression tokens and console cookies from one worker refused
    by the next)."""
    from crosscart.settings import Settings

    configured = Settings()
    for name in GENERATED_SECRETS:
        if not getattr(configured, name.removeprefix("CROSSCART_").lower()):
            os.environ[name] = secrets.token_urlsafe(32)


def require_free_port(host: str, port: int) -> None:
    """Exit with a one-line reason when `host:port` cannot be bound (another server holds it), before
    any model loads: uvicorn binds only after the app's start-up, and then logs the clash among its
    shutdown lines. Bound with SO_REUSEADDR as uvicorn binds, so a closed socket in TIME_WAIT is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            typer.echo(
                f"Cannot serve on {host}:{port}: {exc.strerror or exc}. Another server (an earlier"
                " `make run`?) holds it: stop that one, or pick another port with --port.",
                err=True,
            )
            raise typer.Exit(1) from None


def require_finished_demo_load() -> None:
    """Exit with one line when the demo began loading this database and never finished (a `make run`
    stopped while loading): served, the partial marketplace would answer as if whole. Refused rather than
    warned about, since the database is the demo's own and a rerun of the demo finishes it; a database
    the demo never loaded (production's) is never refused (`crosscart.demo_state`)."""
    from crosscart.demo_state import unfinished_load
    from crosscart.settings import Settings

    settings = Settings()  # not get_settings(): its cached copy must come after _share_generated_secrets
    note = unfinished_load(settings.data_dir.resolve(), settings.resolved_database_url)
    if note is not None:
        typer.echo(f"Cannot serve: {note}.", err=True)
        raise typer.Exit(1)


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
