"""The `crosscart` command: one sub-command group per user task, each a thin layer over the packages.

Every module here imports only typer at import time; the heavy libraries load inside the commands,
so `crosscart --help` stays instant.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from typer.core import TyperGroup

from crosscart.cli import (
    batch_score,
    campaign,
    coupon,
    db,
    demo,
    doctor,
    evaluate_forecast,
    evaluate_next_basket,
    evaluate_recommender,
    evaluate_session,
    evaluate_uplift,
    experiment,
    features,
    generate,
    search,
    serve,
    train,
    train_delivery,
    train_session,
    train_uplift,
)

# The service runs on closed networks; MLflow's usage telemetry stays off unless the operator opts in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# implicit's solvers parallelise themselves; a threaded BLAS underneath only slows them down.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# MLflow's SQL stores log each database error with its traceback before raising it; the command reports
# the raised error itself (one line for a locked store, below), so that log only repeats it (60+ lines).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


BUSY_MESSAGE = (
    "a SQLite database this command writes (the MLflow store, or the database) is locked by another "
    "process past the busy timeout: try again when that writer is done"
)

DATABASE_GONE = "the database did not answer"
SCHEMA_BEHIND = "the database's schema is behind this version of CrossCart"


class Terminated(BaseException):
    """SIGTERM arrived (`_terminable`). Not an `Exception`, so no `except Exception` on the way takes it
    for an error to report and go on from."""


@contextmanager
def _terminable() -> Iterator[None]:
    """Turn SIGTERM (a node drain, `docker stop`, an operator's `kill`) into `Terminated`, raised in the
    main thread where it runs, so that the command's clean-ups run before it ends: Python's default
    ended the process at once, as SIGKILL does, so a terminated `features job` left its spill (a copy
    of the events) for good, and a terminated training left its MLflow run RUNNING until the next
    training of the experiment. The process then ends by SIGTERM all the same, saying nothing more (its
    parent sees the signal; `serve` re-raises it after uvicorn's graceful shutdown); a second SIGTERM
    while it cleans up ends it at once. Code running outside Python (a model's fit in C) takes the
    exception when it returns to Python."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        yield
        return

    def terminate(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Commands(TyperGroup):
    """Every command: SIGTERM ends it through its clean-ups (`_terminable`). The host's storage refusing
    a write (`commerce.files.is_storage_refusal`: a full, read-only or failing disk) ends it with one
    line naming the file written (`commerce.files.refused_path`: a copy's destination, so the directory
    that is full), exit 1, where it printed a traceback (83 lines for `campaign export`); so does an
    input Parquet file it cannot use (`commerce.inputs.is_unreadable_input`: cut short, damaged
    pages, a column missing or of another kind; `db load`, `features build`: 25-440 lines), and a SQLite
    database locked by another writer past the busy timeout (`commerce.db.is_sqlite_busy`: MLflow's
    store during `train`, 100+ lines); so does a migration that gave up waiting for a table lock
    (`commerce.migrate.MigrationLocked`, `db upgrade`), and a database that does not answer (refused,
    reset in a failover, timed out: `serving.resilience.is_outage`; 518-543 lines for `coupon list`,
    `campaign list`, `db expire-orders`); a database whose schema lacks a table or column the command
    uses (never migrated, or migrated by an older version: `commerce.db.is_schema_behind`) says to run
    `crosscart db upgrade` rather than to wait for it. Any other exception is still a bug and shows its
    traceback."""

    def invoke(self, ctx):
        with _terminable():
            return self._invoke(ctx)

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            from commerce.files import is_storage_refusal, refused_path

            if not is_storage_refusal(exc):
                raise
            where = f" {path}" if (path := refused_path(exc)) else ""
            typer.echo(f"error: cannot write{where}: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
        except ValueError as exc:  # commerce.inputs.BadInputFile, pyarrow's ArrowInvalid
            from commerce.inputs import is_unreadable_input

            if not is_unreadable_input(exc):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        except Exception as exc:
            from commerce.db import is_schema_behind, is_sqlite_busy
            from commerce.migrate import MigrationLocked

            if isinstance(exc, MigrationLocked):
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from exc
            if is_sqlite_busy(exc):
                typer.echo(f"error: {BUSY_MESSAGE}", err=True)
                raise typer.Exit(1) from exc
            cause = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
            if is_schema_behind(exc):
                typer.echo(f"error: {SCHEMA_BEHIND} ({cause}): run `crosscart db upgrade`", err=True)
                raise typer.Exit(1) from exc
            if _database_gone(exc):
                typer.echo(
                    f"error: {DATABASE_GONE} ({cause}): run the command again once it does (`crosscart "
                    "doctor` checks it); a change cut off at its commit may have been kept",
                    err=True,
                )
                raise typer.Exit(1) from exc
            raise


def _database_gone(error: BaseException) -> bool:
    """The database refused the connection, reset it or timed out (a server down or failing over), not
    a server taking no writes (a standby) nor one refusing this command's statement."""
    from serving.resilience import is_outage, is_read_only

    return is_outage(error) and not is_read_only(error)


app = typer.Typer(
    name="crosscart",
    cls=_Commands,
    help="CrossCart: recommendations and precision marketing for cross-border marketplaces.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.command("demo")(demo.demo)
app.command("doctor")(doctor.doctor)
app.command("generate")(generate.generate)
app.add_typer(db.app, name="db")
app.add_typer(features.app, name="features")

train.app.command("uplift")(train_uplift.train_uplift)
train.app.command("delivery")(train_delivery.train_delivery)
train.app.command("session")(train_session.train_session)
app.add_typer(train.app, name="train")

evaluate_app = typer.Typer(
    help="Offline evaluation: recommenders, next baskets, session models, uplift models, demand forecasts "
    "and search ranking.",
    no_args_is_help=True,
)
evaluate_app.command("recommender")(evaluate_recommender.evaluate_recommender)
evaluate_app.command("next-basket")(evaluate_next_basket.evaluate_next_basket)
evaluate_app.command("uplift")(evaluate_uplift.evaluate_uplift)
evaluate_app.command("forecast")(evaluate_forecast.evaluate_forecast)
evaluate_app.command("session")(evaluate_session.evaluate_session)
evaluate_app.command("search")(search.evaluate_search)
app.add_typer(evaluate_app, name="evaluate")

app.add_typer(experiment.app, name="experiment")
app.add_typer(campaign.app, name="campaign")
app.add_typer(coupon.app, name="coupon")
app.add_typer(search.app, name="search")
app.command("serve")(serve.serve)
app.command("batch-score")(batch_score.batch_score)
