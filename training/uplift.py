"""The coupon effect model: fit on a marketplace's past campaigns, score, log to MLflow, register; load
it back (planning a stored campaign with it is `marketing.planning`).

One model serves the planner and the API: a `CouponEffectModel` whose arms are coupon *kinds* (`amount_off`,
`percent_off`) against the holdout, pooled over past campaigns (the channel is a feature). Kinds,
not past coupon ids, because a new campaign brings new coupons: each is priced by its own terms
(face value or rate and cap, minimum spend) on top of its kind's learned purchase uplift and basket.
It is registered inside a `ServedCouponUplift`, whose pyfunc `predict(DataFrame[shopper_id,
coupon_id[, kind]])` is the API's contract for ranking coupons.
The registered metric is the held-out Qini AUC of "any coupon versus holdout" on conversion, for
the model that was logged, so the registry's number describes exactly that model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.uplift_metrics import plot_uplift_report, uplift_by_percentile
from features.campaign_features import (
    EVENT_COLUMNS,
    campaign_training_table,
    encode_features,
    shopper_history_features,
)
from models.uplift.effects import CouponEffectModel, CouponTermsEffectModel, ServedCouponUplift
from training.evaluate_uplift import score
from training.registry import (
    UPLIFT_KEY,
    ModelUnavailable,
    champion_version,
    load_artifact,
    register_and_maybe_promote,
    registry_client,
)
from training.tracking import metric_key, use_tracking

__all__ = [
    "ARTIFACT_NAME",
    "fit_effect_model",
    "fit_terms_model",
    "train_uplift_model",
    "serving_bundle",
    "load_uplift_model",
]

ARTIFACT_NAME = "uplift"
CONTROL = "control"


def _pooled_uplift(model: CouponEffectModel, X: pd.DataFrame, arm_share: pd.Series) -> np.ndarray:
    """Uplift of "a coupon" (any kind): each kind's uplift weighted by its share of treated rows."""
    effects = np.asarray(model.predict_uplift(X)).reshape(len(X), -1)
    weights = arm_share.reindex(model.arms_).fillna(0.0).to_numpy()
    return effects @ (weights / weights.sum())


def fit_effect_model(
    data_dir: str | Path, *, learner: str = "x", test_size: float = 0.0, seed: int = 42
) -> tuple[CouponEffectModel, dict | None]:
    """Fit on the marketplace's past campaigns; with `test_size` > 0, hold out that share (stratified
    by arm x conversion) and return its scores, else return None for them."""
    from sklearn.model_selection import train_test_split

    X, labels = campaign_training_table(data_dir)
    kind = labels["kind"].to_numpy()
    converted = labels["converted"].to_numpy(dtype=float)
    spend = labels["spend"].to_numpy(dtype=float)
    rows = np.arange(len(X))
    test = rows[:0]
    if test_size > 0:
        strata = labels["kind"] + "|" + labels["converted"].astype(str)
        rows, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=strata)
    model = CouponEffectModel(learner=learner, control=CONTROL, random_state=seed)
    model.fit(X.iloc[rows], kind[rows], converted[rows], spend[rows])
    if not len(test):
        return model, None
    share = pd.Series(kind[rows][kind[rows] != CONTROL]).value_counts(normalize=True)
    uplift = _pooled_uplift(model, X.iloc[test], share)
    treated = (kind[test] != CONTROL).astype(int)
    return model, {
        "metrics": score(converted[test], uplift, treated),
        "outcome": converted[test],
        "uplift": uplift,
        "treatment": treated,
        "n_train": len(rows),
        "rows": test,
    }


def fit_terms_model(data_dir: str | Path, *, seed: int = 0) -> CouponTermsEffectModel:
    """A `CouponTermsEffectModel` on the marketplace's past campaigns (arms = coupon ids, priced by
    their terms from coupons.parquet, each campaign its own randomisation group): what the planner
    uses for a new campaign's coupons, whose terms the past ones need not share."""
    X, labels = campaign_training_table(data_dir)
    coupons = pd.read_parquet(Path(data_dir) / "coupons.parquet")
    terms = pd.DataFrame(
        {
            "coupon_id": coupons["coupon_id"],
            "kind": coupons["kind"],
            "face_value": coupons["value"].map(float),
            "min_spend": coupons["min_spend"].map(float),
            "cap": coupons["cap"].map(lambda v: np.nan if pd.isna(v) else float(v)),
            "scope_type": coupons["scope_type"],
        }
    )
    return CouponTermsEffectModel(control=CONTROL, random_state=seed).fit(
        X, labels["arm"], labels["converted"], labels["spend"], labels["redeemed"], terms,
        groups=labels["campaign_id"],
    )  # fmt: skip


def serving_bundle(data_dir: str | Path, model: CouponEffectModel) -> ServedCouponUplift:
    """The registered artifact: `model`, the features of a shopper without history (channel `site`,
    where the API offers coupons) and the known coupons' kinds; no shopper's features (scoring reads
    them from the current tables)."""
    import json

    directory = Path(data_dir)
    manifest = directory / "manifest.json"
    if manifest.exists():
        as_of = pd.Timestamp(json.loads(manifest.read_text())["end"])
    else:
        as_of = pd.read_parquet(directory / "events", columns=["ts"])["ts"].max()
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
    newcomer = pd.DataFrame(
        {"shopper_id": ["new"], "region": ["unknown"], "segment": [None], "created_at": [as_of]}
    )
    columns = list(model.feature_names_in_)
    new_shopper = encode_features(shopper_history_features(empty, newcomer, as_of, "site"), columns)
    kinds = pd.read_parquet(directory / "coupons.parquet", columns=["coupon_id", "kind"])
    return ServedCouponUplift(
        model, new_shopper.iloc[0].to_numpy(), dict(zip(kinds["coupon_id"], kinds["kind"], strict=True))
    )


def train_uplift_model(
    data_dir: str | Path,
    *,
    learner: str = "x",
    test_size: float = 0.3,
    seed: int = 42,
    tracking_uri: str,
    experiment: str = "crosscart-uplift",
    registered_name: str = "crosscart-uplift",
) -> dict:
    """Train, evaluate on held-out rows, log and register; returns metrics, run id and the promotion."""
    import mlflow  # slow to import: only training and the registry pay for it

    from training.pyfunc import log_uplift

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    model, held_out = fit_effect_model(data_dir, learner=learner, test_size=test_size, seed=seed)
    metrics = held_out["metrics"]
    y, uplift, t = held_out["outcome"], held_out["uplift"], held_out["treatment"]

    _, experiment_id = use_tracking(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        params = {"learner": learner, "test_size": test_size, "seed": seed, "n_train": held_out["n_train"]}
        inner = model.conversion_model_
        if hasattr(inner, "best_key_"):
            params["chosen"] = inner.best_key_
        params["arms"] = ",".join(map(str, model.arms_))
        mlflow.log_params(params)
        mlflow.log_metrics({metric_key(k): v for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            for path in plot_uplift_report(y, uplift, t, Path(tmp)):
                mlflow.log_artifact(str(path), "plots")
            table = Path(tmp) / "uplift_by_percentile.csv"
            uplift_by_percentile(y, uplift, t).to_csv(table, index=False)
            mlflow.log_artifact(str(table), "tables")
        log_uplift(serving_bundle(data_dir, model), name=ARTIFACT_NAME)
        run_id = run.info.run_id
    promotion = register_and_maybe_promote(
        run_id, ARTIFACT_NAME, registered_name, "qini_auc", metrics["qini_auc"], tracking_uri=tracking_uri
    )
    return {"run_id": run_id, "metrics": metrics, "params": params, "promotion": promotion}


def load_uplift_version(tracking_uri: str, name: str, version: str | int) -> ServedCouponUplift:
    """The one uplift loader (serving polls through it too): version `version` of `name`;
    ModelUnavailable (clear message) for a missing, unreadable or foreign artifact."""
    return load_artifact(tracking_uri, name, version, UPLIFT_KEY, ServedCouponUplift.load)


def load_uplift_model(tracking_uri: str, name: str, alias: str = "champion") -> ServedCouponUplift:
    """The uplift model registered as `name@alias`; ModelUnavailable (clear message) when there is
    none or it cannot be loaded."""
    version = champion_version(registry_client(tracking_uri), name, alias)
    if version is None:
        raise ModelUnavailable(
            f"no uplift model registered as {name}@{alias}; run `crosscart train uplift --data DIR` "
            "or plan with a marketplace directory to fit one"
        )
    return load_uplift_version(tracking_uri, name, version.version)
