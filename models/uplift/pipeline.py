"""Fit the uplift model on a marketplace's past campaigns, score it on held-out shoppers, log to MLflow.

The treatment is "got any coupon" against the holdout, pooled over past campaigns (each campaign's
channel is a feature); the outcome is conversion in the campaign window. The model that was scored
is the one logged and registered, so the registry's metric describes exactly that model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from experiments.evaluate_uplift import CampaignData, score, split_campaign
from experiments.uplift_metrics import plot_uplift_report, uplift_by_percentile
from models.uplift.campaign_data import campaign_training_table
from models.uplift.selection import make_model

__all__ = ["train_uplift_model", "ARTIFACT_NAME"]

ARTIFACT_NAME = "uplift"


def train_uplift_model(
    data_dir: str | Path,
    *,
    learner: str = "auto",
    test_size: float = 0.3,
    seed: int = 42,
    tracking_uri: str,
    experiment: str = "crosscart-uplift",
    registered_name: str = "crosscart-uplift",
) -> dict:
    """Train, evaluate, log and register; returns the metrics, run id and what the registry did."""
    import mlflow

    from training.registry import register_and_maybe_promote
    from training.tracking import metric_key, use_tracking

    X, labels = campaign_training_table(data_dir)
    data = CampaignData(X, labels["treated"].to_numpy(), labels["converted"].to_numpy(dtype=float))
    train, test = split_campaign(data, test_size, seed)
    model = make_model(learner, binary=True, random_state=seed).fit(train.X, train.treatment, train.outcome)
    uplift = model.predict_uplift(test.X)
    metrics = score(test.outcome, uplift, test.treatment)

    _, experiment_id = use_tracking(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        params = {"learner": learner, "test_size": test_size, "seed": seed, "n_train": len(train.outcome)}
        if learner == "auto":
            params["chosen"] = model.best_key_
        mlflow.log_params(params)
        mlflow.log_metrics({metric_key(k): v for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            for path in plot_uplift_report(test.outcome, uplift, test.treatment, Path(tmp)):
                mlflow.log_artifact(str(path), "plots")
            table = Path(tmp) / "uplift_by_percentile.csv"
            uplift_by_percentile(test.outcome, uplift, test.treatment).to_csv(table, index=False)
            mlflow.log_artifact(str(table), "tables")
        mlflow.sklearn.log_model(
            model,
            name=ARTIFACT_NAME,
            serialization_format="cloudpickle",
            pyfunc_predict_fn="predict_uplift",
            pip_requirements=["scikit-learn", "lightgbm", "numpy", "pandas"],
        )
        run_id = run.info.run_id
    promotion = register_and_maybe_promote(
        run_id, ARTIFACT_NAME, registered_name, "qini_auc", metrics["qini_auc"], tracking_uri=tracking_uri
    )
    return {"run_id": run_id, "metrics": metrics, "params": params, "promotion": promotion}
