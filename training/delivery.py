"""Train the delivery-time model on a shipment history, check its calibration on later deliveries, log
it to MLflow and register it (alias moves when the held-out intervals are calibrated for every partner).

The held-out check is temporal: fit on the first 80% of shipments by order time, measure on the rest
how often the 10%-90% band holds the real delivery time (target 0.80) per partner. The registered model
is then refit on the whole history, so serving uses the latest lanes and seasons.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from features.logistics import FEATURES, delivery_features
from models.logistics import DeliveryTimeModel
from training.registry import load_artifact

ARTIFACT_NAME = "model"
ARTIFACT_KEY = "delivery_model"
CALIBRATION_METRIC = "max_coverage_error"  # max over partners of |coverage of the 80% band - 0.80|


def read_shipments(data_dir: str | Path) -> tuple[pd.DataFrame, list]:
    """A generated marketplace's shipments and its discount seasons (the known peak windows)."""
    data_dir = Path(data_dir)
    path = data_dir / "shipments.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no shipments at {path}; generate the marketplace's logistics first")
    seasons = pd.read_parquet(data_dir / "seasons.parquet")
    return pd.read_parquet(path), list(zip(seasons["start"], seasons["end"], strict=True))


def holdout_calibration(
    shipments: pd.DataFrame, peaks: list, *, holdout_share: float = 0.2, random_state: int = 0
) -> pd.DataFrame:
    """Per partner: held-out deliveries, coverage of the 80% band and share within the 80% quantile."""
    if not 0 < holdout_share < 1:
        raise ValueError("holdout_share must be in (0, 1)")
    cut = shipments["ordered_at"].quantile(1 - holdout_share)
    train, test = shipments[shipments["ordered_at"] < cut], shipments[shipments["ordered_at"] >= cut]
    model = DeliveryTimeModel(random_state=random_state).fit(
        delivery_features(train, peaks), train["delivery_days"]
    )
    q = model.predict_quantiles(delivery_features(test, peaks))
    actual = test["delivery_days"].to_numpy()
    frame = pd.DataFrame(
        {
            "partner_id": test["partner_id"].to_numpy(),
            "inside": (actual >= q["q10"].to_numpy()) & (actual <= q["q90"].to_numpy()),
            "within_q80": actual <= q["q80"].to_numpy(),
        }
    )
    return frame.groupby("partner_id").agg(
        deliveries=("inside", "size"), coverage_80=("inside", "mean"), within_q80=("within_q80", "mean")
    )


def train_delivery_model(
    data_dir: str | Path,
    *,
    tracking_uri: str,
    registered_name: str = "crosscart-delivery",
    experiment: str = "crosscart-delivery",
    random_state: int = 0,
) -> dict:
    """Check calibration on later deliveries, refit on all, log and register; returns the figures."""
    import joblib
    import mlflow

    from training.delivery_pyfunc import ENTRY_POINT, SIGNATURE
    from training.pyfunc import default_requirements
    from training.registry import register_and_maybe_promote
    from training.tracking import use_tracking

    shipments, peaks = read_shipments(data_dir)
    calibration = holdout_calibration(shipments, peaks, random_state=random_state)
    max_error = float((calibration["coverage_80"] - 0.8).abs().max())
    features = delivery_features(shipments, peaks)
    model = DeliveryTimeModel(random_state=random_state).fit(features, shipments["delivery_days"])
    _, experiment_id = use_tracking(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"shipments": len(shipments), "random_state": random_state})
        mlflow.log_metrics(
            {CALIBRATION_METRIC: max_error}
            | {f"coverage_80.{p}": float(v) for p, v in calibration["coverage_80"].items()}
        )
        path = Path(tmp) / "delivery.joblib"
        joblib.dump(model, path)
        mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            python_model=ENTRY_POINT,
            artifacts={ARTIFACT_KEY: str(path)},
            signature=SIGNATURE,
            input_example=features.head(3),
            pip_requirements=default_requirements(),
        )
        run_id = run.info.run_id
    promotion = register_and_maybe_promote(
        run_id, ARTIFACT_NAME, registered_name, CALIBRATION_METRIC, max_error, higher_is_better=False,
        tracking_uri=tracking_uri, force=max_error <= 0.05,
    )  # fmt: skip
    return {
        "run_id": run_id,
        "calibration": calibration.reset_index().to_dict(orient="records"),
        CALIBRATION_METRIC: max_error,
        "promotion": promotion,
        "features": list(FEATURES),
    }


def load_delivery_version(tracking_uri: str, name: str, version: str | int) -> DeliveryTimeModel:
    """The delivery-time model of a registered version (serving polls through it); ModelUnavailable with a
    clear message for a missing or unreadable artifact."""
    import joblib

    return load_artifact(tracking_uri, name, version, ARTIFACT_KEY, joblib.load)
