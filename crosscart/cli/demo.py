"""`crosscart demo`: the main job behind `make run`.

Creates the database, generates and loads the demo marketplace, builds the feature tables, trains and
registers the models (recommenders, uplift, delivery time, session model), creates demo API keys, then
serves the API. Every step records what it did in
`DATA_DIR/demo-state.json` keyed by a fingerprint of its inputs, so a re-run skips finished work and
redoes only what changed (another database URL, another MLflow store, other data).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import typer

from crosscart.cli.generate import ScaleName
from crosscart.demo_state import STATE_FILE, StepLog, fingerprint

DEMO_SEED = 7
DEMO_SESSION_MODEL = "auto"  # tuned on the marketplace's own visits (models.sessions.auto)
DEMO_SESSION_PARAMS = {"max_predictions": 1500}  # tuning time in step with the other demo models
RANKING_WINDOW_DAYS = 7  # /v1/rankings' default window


def stale_data_note(data_end: date, today: date) -> str | None:
    """What to tell the user when the demo's data (generated once, ending `data_end`) ended too long ago
    for /v1/rankings' default window to hold any of it; None while it holds some."""
    age = (today - data_end).days
    if age < RANKING_WINDOW_DAYS:
        return None
    return (
        f"the demo marketplace's data ends on {data_end:%Y-%m-%d} ({age} days ago), so /v1/rankings'"
        f" default window ({RANKING_WINDOW_DAYS}d) holds none of it: ask for window=30d or all, or remove"
        " CROSSCART_DATA_DIR (var/) and run again to regenerate data that ends today"
    )


def demo(
    host: str = typer.Option("127.0.0.1", help="Interface for the API."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port for the API."),
    scale: ScaleName = typer.Option(ScaleName.demo, help="Marketplace size: tiny, demo or large."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the API at the end."),
) -> None:
    """Set up everything (database, demo marketplace, features, models, API keys) and serve the API."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from rich.console import Console

    from crosscart.cli.serve import require_free_port
    from crosscart.settings import get_settings

    if serve:
        require_free_port(host, port)  # before the long steps, not after them
    console = Console()
    settings = get_settings()
    settings.ensure_dirs()
    data_dir = settings.data_dir.resolve()
    scale = scale.value  # a plain string in paths and fingerprints, as before
    market_dir = data_dir / f"marketplace-{scale}"
    features_dir = data_dir / f"features-{scale}"
    try:
        log = StepLog(data_dir / STATE_FILE)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    db_url = settings.resolved_database_url
    mlflow_uri = settings.resolved_mlflow_uri
    console.print(f"[bold]CrossCart demo[/] data={data_dir} database={_redact(db_url)} mlflow={mlflow_uri}")

    from commerce.migrate import current, upgrade

    with console.status("Migrating the database"):
        upgrade(db_url)
    schema_revision = current(db_url)
    console.print(f"[green]✓[/] database schema at {schema_revision}")

    from features.synth import generate_marketplace
    from features.synth.timeline import Timeline

    today = datetime.now(UTC).date()
    gen_fp = fingerprint("generate", scale, DEMO_SEED)
    if log.is_done("generate", gen_fp) and (market_dir / "manifest.json").is_file():
        console.print(f"[dim]· marketplace already generated in {market_dir}[/]")
    else:
        from crosscart.cli.progress import progress_callback

        with progress_callback(console, "generate") as report:
            # the data ends today (the timeline moved by whole days), so the storefront's windows (the
            # last 7 days' best sellers, say) hold some of it; generated once, it then ages
            timeline = Timeline().ending_on(today)
            manifest = generate_marketplace(
                market_dir, scale=scale, seed=DEMO_SEED, timeline=timeline, progress=report
            )
        log.mark("generate", gen_fp)
        console.print(f"[green]✓[/] generated {manifest['counts']}")
    manifest_fp = hashlib.sha256((market_dir / "manifest.json").read_bytes()).hexdigest()[:16]
    data_end = datetime.fromisoformat(json.loads((market_dir / "manifest.json").read_text())["end"])
    if (note := stale_data_note(data_end.date(), today)) is not None:
        console.print(f"[yellow]![/] {note}", soft_wrap=True)

    from commerce.db import make_engine, make_session_factory

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    # A new schema revision may mean the importer loads more (it is idempotent): load again then.
    load_fp = fingerprint("load", manifest_fp, db_url, schema_revision)
    if log.is_done("load", load_fp):
        console.print("[dim]· marketplace already loaded into the database[/]")
    else:
        from commerce.importer import load_marketplace

        log.load_begins(db_url)  # until it finishes, `crosscart serve` refuses this database
        with console.status("Loading the marketplace into the database"):
            stats = load_marketplace(factory, market_dir, keyring=settings.identity_keyring)
        log.load_done(load_fp, db_url)
        rows = ", ".join(f"{count:,} {name}" for name, count in stats.rows.items() if count)
        console.print(f"[green]✓[/] loaded in {stats.seconds:.0f} s: {rows}")

    features_fp = fingerprint("features", manifest_fp)
    if log.is_done("features", features_fp):
        console.print(f"[dim]· feature tables already built in {features_dir}[/]")
    else:
        from features.tables import build_feature_tables

        with console.status("Building shopper and product feature tables"):
            paths = build_feature_tables(market_dir, features_dir, None)
        log.mark("features", features_fp)
        console.print(f"[green]✓[/] feature tables: {', '.join(str(p) for p in paths.values())}")

    from training.pipelines import train_demo_recommender

    with console.status("Training recommenders (skipped when the champion matches this data)"):
        outcome = train_demo_recommender(settings, market_dir)
    verb = "kept" if outcome.skipped else "trained; champion is"
    console.print(f"[green]✓[/] recommender {verb} {settings.model_name} v{outcome.champion_version}")
    for result in outcome.results:
        console.print(f"    {result}")

    uplift_fp = fingerprint("uplift", manifest_fp, mlflow_uri)
    if log.is_done("uplift", uplift_fp):
        console.print("[dim]· uplift model already trained on this data[/]")
    else:
        from training.uplift import train_uplift_model

        with console.status("Training the coupon uplift model"):
            result = train_uplift_model(
                market_dir, tracking_uri=mlflow_uri, registered_name=settings.uplift_model_name
            )
        log.mark("uplift", uplift_fp)
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in result["metrics"].items())
        console.print(f"[green]✓[/] uplift model: {metrics}")

    delivery_fp = fingerprint("delivery", manifest_fp, mlflow_uri)
    if log.is_done("delivery", delivery_fp):
        console.print("[dim]· delivery-time model already trained on this data[/]")
    else:
        from training.delivery import CALIBRATION_METRIC, train_delivery_model

        with console.status("Training the delivery-time model"):
            result = train_delivery_model(
                market_dir, tracking_uri=mlflow_uri, registered_name=settings.delivery_model_name
            )
        log.mark("delivery", delivery_fp)
        console.print(
            f"[green]✓[/] delivery model: 80% windows off by at most {result[CALIBRATION_METRIC]:.3f}"
            f" on later deliveries ({result['promotion'].reason})"
        )

    session_fp = fingerprint("session", manifest_fp, mlflow_uri, DEMO_SESSION_MODEL, DEMO_SESSION_PARAMS)
    if log.is_done("session", session_fp):
        console.print("[dim]· session model already trained on this data[/]")
    else:
        from training.sessions import train_marketplace_session_model

        with console.status(f"Training the session model ({DEMO_SESSION_MODEL})"):
            # the step reruns only for new data or a new MLflow store: its model is the one to serve
            result = train_marketplace_session_model(
                market_dir, tracking_uri=mlflow_uri, registered_name=settings.session_model_name,
                model=DEMO_SESSION_MODEL, params=DEMO_SESSION_PARAMS, force_promote=True,
            )  # fmt: skip
        log.mark("session", session_fp)
        console.print(
            f"[green]✓[/] session model {settings.session_model_name}"
            f" v{result.promotion.version if result.promotion else '?'} ({result.served}):"
            f" {result.metric} {result.value:.3f} on the last day's visits"
        )

    from crosscart.cli.demo_keys import create_demo_keys, sample_key_lines

    keys = create_demo_keys(factory, data_dir)
    engine.dispose()
    keys_path = data_dir / "demo-keys.json"
    # Stdout ends up in logs: the admin key stays in the file (mode 600), only sample keys are shown.
    console.print(
        f"[green]✓[/] API keys (one per role, admin included) written to {keys_path}; samples:",
        soft_wrap=True,
    )
    for line in sample_key_lines(keys):
        console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)

    if not serve:
        return
    base = f"http://{host}:{port}"
    console.print(
        f"\n[bold]Open {base}/docs[/] and press 'Authorize' with a key from {keys_path}, or sign in"
        f" to {base}/console with one. Until {base}/ready answers 200 (the champion recommender loads"
        " and warms up: about a minute on the demo data), recommendations come from the popularity"
        " fallback.",
        soft_wrap=True,
    )
    from crosscart.cli.serve import serve as serve_api

    serve_api(host=host, port=port, workers=1, log_level="info")


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
