"""The MLflow pyfunc wrappers every registered model is logged as: recommenders and the uplift model.

Each artifact holds the model as its own `save` wrote it (key `recommender` or `uplift`); `load_context`
reads it back. The wrappers are logged as code (`training/pyfunc_entry.py`,
`training/uplift_pyfunc_entry.py`: MLflow's models-from-code), with a signature and pinned
requirements, so `mlflow.pyfunc.load_model` works wherever the crosscart package is installed.
Serving skips the wrappers and loads the artifact directly (`training.registry.load_artifact`); the
wrappers are for `mlflow.pyfunc.load_model` users and batch scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from training.registry import ARTIFACT_KEY, UPLIFT_KEY

DEFAULT_N = 10
ENTRY_POINT = str(Path(__file__).with_name("pyfunc_entry.py"))  # logged as code, not pickled
UPLIFT_ENTRY_POINT = str(Path(__file__).with_name("uplift_pyfunc_entry.py"))

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "n", required=False)]),
    outputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("double", "score"),
        ]
    ),
    params=ParamSchema([ParamSpec("n", "long", DEFAULT_N), ParamSpec("exclude_seen", "boolean", True)]),
)


UPLIFT_SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "shopper_id"),
            ColSpec("string", "coupon_id"),
            ColSpec("string", "kind", required=False),
        ]
    ),
    outputs=Schema([ColSpec("double", "uplift")]),
)


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """Top-n recommendations for a frame of user ids, as a long frame (user_id, rank, item_id, score)."""

    def load_context(self, context) -> None:
        from models.recommenders import load_recommender

        self.recommender = load_recommender(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """`n` comes per row (column `n`) or per call (`params={"n": ...}`); unknown users get no rows."""
        return recommendations_frame(self.recommender, model_input, params)


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """Each (shopper_id, coupon_id[, kind], features) row's predicted uplift in purchase probability."""

    def load_context(self, context) -> None:
        from models.uplift.effects import ServedCouponUplift

        self.model = ServedCouponUplift.load(context.artifacts[UPLIFT_KEY])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return pd.DataFrame({"uplift": self.model.predict(model_input)})


def recommendations_frame(
    recommender, model_input: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The pyfunc's predict, callable on any fitted recommender (tests and batch scoring use it too)."""
    if "user_id" not in model_input.columns:
        raise ValueError(f"input needs a 'user_id' column; got {list(model_input.columns)}")
    params = params or {}
    default_n = int(params.get("n", DEFAULT_N))
    exclude_seen = bool(params.get("exclude_seen", True))
    users = model_input["user_id"].astype(str)
    if "n" in model_input.columns:
        ns = model_input["n"].fillna(default_n).astype(int)
    else:
        ns = pd.Series(default_n, index=model_input.index)
    if (ns <= 0).any():
        raise ValueError("n must be positive")
    rows: list[tuple[str, int, str, float]] = []
    for n, group in users.groupby(ns, sort=False):
        for user, ranked in zip(
            group, recommender.recommend(group.tolist(), n=int(n), exclude_seen=exclude_seen), strict=True
        ):
            rows.extend((user, rank, item, float(score)) for rank, (item, score) in enumerate(ranked, 1))
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score"])


def log_recommender(recommender, name: str = "model", pip_requirements: list[str] | None = None):
    """Save `recommender` and log it as `RecommenderPyfunc` into the active MLflow run; the ModelInfo."""
    filename = f"{getattr(recommender, 'name', 'recommender')}.joblib"
    return _log(recommender, filename, ENTRY_POINT, ARTIFACT_KEY, SIGNATURE, name, pip_requirements)


def log_uplift(model, name: str = "uplift", pip_requirements: list[str] | None = None):
    """Save a `ServedCouponUplift` and log it as `UpliftPyfunc` into the active run; the ModelInfo.
    The signature adds the model's feature columns as optional inputs: callers pass each shopper's
    current features (rows without them are scored as newcomers)."""
    features = [ColSpec("double", c, required=False) for c in model.feature_names_in_]
    signature = ModelSignature(inputs=Schema([*UPLIFT_SIGNATURE.inputs.inputs, *features]),
                               outputs=UPLIFT_SIGNATURE.outputs)  # fmt: skip
    return _log(model, "uplift.joblib", UPLIFT_ENTRY_POINT, UPLIFT_KEY, signature, name, pip_requirements)


def _log(model, filename, entry_point, key, signature, name, pip_requirements):
    """`model.save` into a temporary file, logged as the wrapper `entry_point` under artifact `key`.

    Requirements are listed, not inferred: MLflow's inference re-imports the model in a subprocess,
    seconds per run for no gain here.
    """
    import tempfile
    import warnings

    with tempfile.TemporaryDirectory(prefix="crosscart-log-") as tmp, warnings.catch_warnings():
        # The signature is explicit, so MLflow's nag for an input example (used to infer one) is moot.
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        path = Path(tmp) / filename
        model.save(path)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=entry_point,
            artifacts={key: str(path)},
            signature=signature,
            pip_requirements=pip_requirements or default_requirements(),
        )


def default_requirements() -> list[str]:
    """The installed versions of what loading a saved recommender imports."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", "numpy", "scipy", "pandas", "scikit-learn", "joblib", "implicit", "lightgbm"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins
