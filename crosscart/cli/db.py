"""`crosscart db`: create and migrate the marketplace database, and load a generated marketplace into it."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path

import typer

from crosscart.cli.progress import working

app = typer.Typer(help="Marketplace database: migrations and loading.", no_args_is_help=True)


def _url() -> str:
    from crosscart.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings.resolved_database_url


#: Read as text so that every bad value gets one line (click's own float type answers with its usage).
LOCK_TIMEOUT_OPTION = typer.Option(
    None,
    "--lock-timeout",
    metavar="SECONDS",
    help="Longest wait for a table lock another session holds, PostgreSQL (default: 5); nothing is "
    "applied past it.",
)


def _lock_timeout(text: str | None) -> dict:
    """The `lock_timeout` keyword for `commerce.migrate` (none: its default): a positive finite number."""
    if text is None:
        return {}
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        typer.echo(f"error: --lock-timeout must be a positive number of seconds, got {text!r}", err=True)
        raise typer.Exit(2)
    return {"lock_timeout": seconds}


@app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    lock_timeout: str = LOCK_TIMEOUT_OPTION,
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from commerce import migrate

    wait = _lock_timeout(lock_timeout)
    migrate.upgrade(_url(), revision, **wait)
    typer.echo(f"database at {migrate.current(_url())}")


@app.command("downgrade", context_settings={"ignore_unknown_options": True})  # `-1` is a revision, not a flag
def downgrade(
    revision: str = typer.Argument("-1", help="Target revision, e.g. -1 or base."),
    lock_timeout: str = LOCK_TIMEOUT_OPTION,
) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from commerce import migrate

    wait = _lock_timeout(lock_timeout)
    migrate.downgrade(_url(), revision, **wait)
    typer.echo(f"database at {migrate.current(_url()) or 'base (empty)'}")


@app.command("current")
def current() -> None:
    """Print the revision the database is at."""
    from commerce import migrate

    typer.echo(migrate.current(_url()) or "base (empty)")


@app.command("init")
def init() -> None:
    """Migrate to the latest schema and seed reference data (logistics partners). Safe to re-run."""
    from commerce import migrate
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.services.logistics import seed_default_partners

    url = _url()
    migrate.upgrade(url)
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        seed_default_partners(session)
    engine.dispose()
    typer.echo(f"database ready at {migrate.current(url)}")


class EventSelection(StrEnum):
    all = "all"
    purchases = "purchases"
    none = "none"


@app.command("load")
def load(
    data_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A generated marketplace."),
    events: EventSelection = typer.Option(
        EventSelection.all, help="Events to load: all, purchases (with coupon events) or none."
    ),
) -> None:
    """Load a generated marketplace directory into the database (idempotent)."""
    from rich.console import Console
    from rich.table import Table

    from commerce import migrate
    from commerce.db import make_engine, make_session_factory
    from commerce.errors import ValidationError
    from commerce.importer import load_marketplace
    from crosscart.settings import get_settings

    url = _url()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with working("loading the marketplace"):
            stats = load_marketplace(
                make_session_factory(engine),
                data_dir,
                keyring=get_settings().identity_keyring,
                events=str(events),
            )
    except ValidationError as exc:  # a directory that is no marketplace, a file breaking the contract
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    table = Table("table", "rows read", title=f"loaded {data_dir} in {stats.seconds:.1f} s")
    for name, count in stats.rows.items():
        table.add_row(name, f"{count:,}")
    Console().print(table)


@app.command("expire-orders")
def expire_orders(
    ttl_minutes: float = typer.Option(
        None, min=0.01, help="Payment window in minutes (default: CROSSCART_PENDING_ORDER_TTL_MINUTES, 30)."
    ),
) -> None:
    """Expire unpaid orders older than the payment window: their stock and coupon uses are given back.
    Safe to run alongside the API (which also sweeps on a timer) and from cron."""
    from datetime import timedelta

    from commerce.db import make_engine, make_session_factory
    from commerce.services.pending import expire_pending_orders
    from crosscart.settings import get_settings

    if ttl_minutes is not None and not math.isfinite(ttl_minutes):  # click's `min` lets nan and inf by
        typer.echo(f"error: --ttl-minutes must be a number of minutes, got {ttl_minutes}", err=True)
        raise typer.Exit(2)
    ttl = timedelta(minutes=ttl_minutes) if ttl_minutes is not None else get_settings().pending_policy.ttl
    engine = make_engine(_url())
    factory, total = make_session_factory(engine), 0
    while batch := expire_pending_orders(factory, ttl):  # batches of 1,000 until none is left
        total += len(batch)
    engine.dispose()
    typer.echo(f"expired {total} unpaid orders older than {ttl}")


@app.command("campaign-spend")
def campaign_spend(
    repair: bool = typer.Option(
        False, "--repair", help="Set each drifted campaign's spent to what its redemptions took."
    ),
) -> None:
    """Check every campaign's spent against its coupons' redemptions (not cancelled or refunded); exit 1
    while any differs. With --repair, set it to that total; one whose redemptions took more than its
    budget is set to its budget (nothing more is spent) and still reported (the budget is a hard cap:
    raise it to record the whole)."""
    import commerce.all_models  # noqa: F401  (complete metadata)
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.services.coupons import campaign_spend_drift, recount_campaign_spend

    engine = make_engine(_url())
    with transaction(make_session_factory(engine)) as session:
        found = recount_campaign_spend(session) if repair else campaign_spend_drift(session)
        left = campaign_spend_drift(session) if repair else found
    engine.dispose()
    over = {d.campaign_id for d in left} if repair else set()
    for d in found:
        note = (
            "over budget, held at the budget"
            if d.campaign_id in over
            else ("repaired" if repair else "drift")
        )
        typer.echo(f"{d.campaign_id}: spent {d.stored}, redemptions {d.counted}, budget {d.budget} ({note})")
    typer.echo(f"{len(found)} campaigns differed, {len(found) - len(left)} repaired, {len(left)} left")
    if left:
        raise typer.Exit(1)


@app.command("renormalise")
def renormalise(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would change; change nothing."),
) -> None:
    """Coupon ids and experiment, layer and variant names stored before they were normalised (before
    round 6): lookups read names in their normal form, so these could not be found. Lists each and
    rewrites it, with every row that names it; one whose normal form another stored name holds or shares
    is reported and left as it is, as is every merchant, product or campaign id not in normal form
    (listed: rename it by hand). Stored skeletons ICU no longer gives (the look-alike check's keys)
    are recomputed. Exit 1 while any name is left (or, with --dry-run, any name or skeleton is found).
    Run it while the shop is quiet: a coupon renamed under a running checkout can roll either back."""
    import commerce.all_models  # noqa: F401  (complete metadata)
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.services import renormalise as names

    engine = make_engine(_url())
    with transaction(make_session_factory(engine)) as session:
        stale = names.stale_skeletons(session)
        found = names.unnormalised(session) if dry_run else names.renormalise(session)
    engine.dispose()
    for r in found:
        typer.echo(r.describe())
    for column, name, key in stale:
        typer.echo(f"{column} {name!r}: skeleton {key!r} {'to store' if dry_run else 'stored'}")
    done = 0 if dry_run else sum(r.safe for r in found)
    typer.echo(f"{len(found)} names not in normal form, {done} renormalised, {len(found) - done} left")
    if stale:
        typer.echo(f"{len(stale)} stored skeletons out of date{'' if dry_run else ', recomputed'}")
    if len(found) > done or (dry_run and stale):
        raise typer.Exit(1)
