"""The `crosscart` command: one sub-command group per user task, each a thin layer over the packages.

Every module here imports only typer at import time; the heavy libraries load inside the commands,
so `crosscart --help` stays instant.
"""

from __future__ import annotations

import os

import typer

from crosscart.cli import (
    batch_score,
    campaign,
    db,
    demo,
    evaluate_recommender,
    evaluate_uplift,
    experiment,
    features,
    generate,
    serve,
    train,
    train_uplift,
)

# The service runs on closed networks; MLflow's usage telemetry stays off unless the operator opts in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# implicit's solvers parallelise themselves; a threaded BLAS underneath only slows them down.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

app = typer.Typer(
    name="crosscart",
    help="CrossCart: recommendations and precision marketing for cross-border marketplaces.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.command("demo")(demo.demo)
app.command("generate")(generate.generate)
app.add_typer(db.app, name="db")
app.add_typer(features.app, name="features")

train.app.command("uplift")(train_uplift.train_uplift)
app.add_typer(train.app, name="train")

evaluate_app = typer.Typer(help="Offline evaluation of recommenders and uplift models.", no_args_is_help=True)
evaluate_app.command("recommender")(evaluate_recommender.evaluate_recommender)
evaluate_app.command("uplift")(evaluate_uplift.evaluate_uplift)
app.add_typer(evaluate_app, name="evaluate")

app.add_typer(experiment.app, name="experiment")
app.add_typer(campaign.app, name="campaign")
app.command("serve")(serve.serve)
app.command("batch-score")(batch_score.batch_score)
