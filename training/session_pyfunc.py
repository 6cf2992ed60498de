"""The MLflow pyfunc wrapper registered session models are logged as (models-from-code, nothing pickled).

Input is a long frame of clicks (session_id, item_id) in click order; output the top-n next items per
session (session_id, rank, item_id, score). The artifact is the model as `SessionRecommender.save`
wrote it, under the same key as the other recommenders, so `training.registry` loads either kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from training.pyfunc import default_requirements
from training.registry import ARTIFACT_KEY

DEFAULT_N = 20
ENTRY_POINT = str(Path(__file__).with_name("session_pyfunc_entry.py"))

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "session_id"), ColSpec("string", "item_id")]),
    outputs=Schema(
        [
            ColSpec("string", "session_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("double", "score"),
        ]
    ),
    params=ParamSchema([ParamSpec("n", "long", DEFAULT_N)]),
)


class SessionPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from models.sessions import load_session_model

        self.model = load_session_model(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return session_recommendations_frame(self.model, model_input, params)


def session_recommendations_frame(
    model, model_input: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The pyfunc's predict on any fitted session model: clicks in, top-n next items per session out."""
    missing = {"session_id", "item_id"} - set(model_input.columns)
    if missing:
        raise ValueError(f"input needs columns session_id and item_id; missing {sorted(missing)}")
    n = int((params or {}).get("n", DEFAULT_N))
    if n <= 0:
        raise ValueError("n must be positive")
    rows = []
    clicks = model_input.astype({"session_id": str, "item_id": str})
    for session, group in clicks.groupby("session_id", sort=False):
        ranked = model.recommend(group["item_id"].tolist(), n=n)
        rows.extend((session, rank, item, score) for rank, (item, score) in enumerate(ranked, 1))
    return pd.DataFrame(rows, columns=["session_id", "rank", "item_id", "score"])


def log_session_model(model, name: str = "model"):
    """Save `model` and log it as this wrapper into the active MLflow run; returns the ModelInfo."""
    import tempfile
    import warnings

    with tempfile.TemporaryDirectory(prefix="crosscart-log-") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        path = Path(tmp) / f"{model.name}.joblib"
        model.save(path)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ENTRY_POINT,
            artifacts={ARTIFACT_KEY: str(path)},
            signature=SIGNATURE,
            pip_requirements=default_requirements(),
        )
