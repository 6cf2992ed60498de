"""Train, evaluate, log and register a session model (`crosscart train session`).

The model is scored on the held-out sessions with the next-item protocol (training.evaluate_session),
refitted on every click, logged as the session pyfunc and registered under `registered_name`; the alias
moves only if the held-out metric beats the champion's (training.registry).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from training.registry import Promotion, register_and_maybe_promote
from training.tracking import metric_key, use_tracking

MODEL_ARTIFACT = "model"
DEFAULT_METRIC = "mrr@20"
DEFAULT_EXPERIMENT = "crosscart-sessions"


@dataclass(frozen=True)
class SessionTrainingResult:
    run_id: str
    model: str
    metric: str
    value: float
    figures: dict[str, float]
    promotion: Promotion | None


def train_session_model(
    train: pd.DataFrame,
    test: pd.DataFrame,
    model: str,
    params: Mapping[str, Any] | None = None,
    *,
    tracking_uri: str,
    metric: str = DEFAULT_METRIC,
    experiment: str = DEFAULT_EXPERIMENT,
    registered_name: str = "crosscart-session",
    alias: str = "champion",
    register: bool = True,
    force_promote: bool = False,
) -> SessionTrainingResult:
    """`train`/`test` are clicks (session_id, item_id, ts in Unix seconds); `metric` one of the
    evaluation's keys (hr@K or mrr@K)."""
    import mlflow

    from models.sessions import SessionData, make_session_model
    from training.evaluate_session import evaluate_session_model, held_out_sessions
    from training.session_pyfunc import log_session_model

    params = dict(params or {})
    cutoff = int(metric.partition("@")[2] or 0)
    if not metric.startswith(("hr@", "mrr@")) or cutoff < 1:
        raise ValueError(f"metric must be hr@K or mrr@K, got {metric!r}")
    estimator = make_session_model(model, **params)
    _, experiment_id = use_tracking(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"session-{model}") as run:
        mlflow.log_params(params)
        train_data = SessionData.from_frame(train, "session_id", "item_id", "ts")
        test_data = held_out_sessions(train_data, test)
        started = time.perf_counter()
        estimator.fit(train_data)
        fit_seconds = time.perf_counter() - started
        figures = {**evaluate_session_model(estimator, test_data, cutoff), "fit_seconds": fit_seconds}
        mlflow.log_params({"pipeline.model": model, "pipeline.train_sessions": train_data.n_sessions})
        mlflow.log_metrics({metric_key(name): float(v) for name, v in figures.items()})
        value = float(figures[metric])
        full = pd.concat([train, test], ignore_index=True)
        served = make_session_model(model, **params).fit(
            SessionData.from_frame(full, "session_id", "item_id", "ts")
        )
        log_session_model(served, name=MODEL_ARTIFACT)
        promotion = None
        if register:
            promotion = register_and_maybe_promote(
                run.info.run_id, MODEL_ARTIFACT, registered_name, metric, value, True,
                alias=alias, tags={"crosscart.model": model}, force=force_promote,
            )  # fmt: skip
    return SessionTrainingResult(run.info.run_id, model, metric, value, figures, promotion)
