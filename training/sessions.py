"""Train, evaluate, log and register a session model (`crosscart train session`).

The model is scored on the held-out sessions with the next-item protocol (training.evaluate_session),
refitted on every click (`auto`: the model and settings it chose), logged as the session pyfunc and
registered under `registered_name`; the alias moves only if the held-out metric beats the champion's
(training.registry).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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
    served: str = ""  # the model logged and served (auto: the one it chose)


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
        # auto: the choice made on the training part's newest visits is refitted, not tuned again on
        # the held-out visits (which would also double the training time)
        served_name, served_params = getattr(estimator, "chosen_", (model, params))
        if served_name != model:
            mlflow.log_params({"pipeline.served_model": served_name, "pipeline.served_params": served_params})
        served = make_session_model(served_name, **served_params).fit(
            SessionData.from_frame(full, "session_id", "item_id", "ts")
        )
        log_session_model(served, name=MODEL_ARTIFACT)
        promotion = None
        if register:
            promotion = register_and_maybe_promote(
                run.info.run_id, MODEL_ARTIFACT, registered_name, metric, value, True,
                alias=alias, tags={"crosscart.model": served_name}, force=force_promote,
            )  # fmt: skip
    return SessionTrainingResult(run.info.run_id, model, metric, value, figures, promotion, served_name)


def marketplace_clicks(directory: str | Path) -> pd.DataFrame:
    """A generated marketplace's product views as session clicks: session_id, item_id, ts (Unix seconds),
    shopper_id (the visit's shopper, for blending)."""
    from models.sessions.base import to_unix_seconds

    events = pd.read_parquet(
        Path(directory) / "events",
        columns=["ts", "shopper_id", "product_id", "event_type", "session_id"],
        filters=[("event_type", "==", "view")],
    )
    events = events[events["product_id"].notna() & events["session_id"].notna()]
    return pd.DataFrame(
        {
            "session_id": events["session_id"].astype(str).to_numpy(),
            "item_id": events["product_id"].astype(str).to_numpy(),
            "ts": to_unix_seconds(events["ts"]),
            "shopper_id": events["shopper_id"].astype(str).to_numpy(),
        }
    )


def train_marketplace_session_model(
    directory: str | Path,
    *,
    tracking_uri: str,
    registered_name: str,
    model: str = "auto",
    test_days: float = 1.0,
    **kwargs: Any,
) -> SessionTrainingResult:
    """The demo's session model: views of the generated marketplace, the last `test_days` as held-out
    visits, registered under `registered_name` (the API serves its alias)."""
    from training.evaluate_session import split_last_days

    clicks = marketplace_clicks(directory).drop(columns="shopper_id")
    train, test = split_last_days(clicks, test_days)
    return train_session_model(
        train, test, model, tracking_uri=tracking_uri, registered_name=registered_name, **kwargs
    )
