"""The MLflow pyfunc the delivery-time model is logged as: features in, calibrated quantiles out.

Logged as code (`training/delivery_pyfunc_entry.py`), with the fitted model as a joblib artifact, so
`mlflow.pyfunc.load_model` works outside this repository given the pinned requirements.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

ENTRY_POINT = str(Path(__file__).with_name("delivery_pyfunc_entry.py"))

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "partner_id"),
            ColSpec("string", "zone"),
            ColSpec("double", "weight_kg"),
            ColSpec("long", "weekday"),
            ColSpec("double", "hour"),
            ColSpec("long", "in_peak"),
            ColSpec("double", "peak_day"),
        ]
    ),
    outputs=Schema([ColSpec("double", c) for c in ("q10", "q50", "q80", "q90")]),
)


class DeliveryPyfunc(mlflow.pyfunc.PythonModel):
    """Days from order to delivery at the 10/50/80/90% quantiles, one row per parcel."""

    def load_context(self, context) -> None:
        import joblib

        from training.delivery import ARTIFACT_KEY

        self.model = joblib.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.predict_quantiles(model_input)
