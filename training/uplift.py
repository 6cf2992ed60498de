"""The coupon effect model: fit on a marketplace's past campaigns, score, log to MLflow, register; load
it back; and plan a campaign stored in the database with it.

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
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from experiments.uplift_metrics import plot_uplift_report, uplift_by_percentile
from features.campaign_features import (
    EVENT_COLUMNS,
    SHORT_DAYS,
    campaign_training_table,
    encode_features,
    shopper_history_features,
)
from models.uplift import planner
from models.uplift.effects import CouponEffectModel, CouponTermsEffectModel, ServedCouponUplift

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "ARTIFACT_NAME",
    "fit_effect_model",
    "fit_terms_model",
    "train_uplift_model",
    "serving_bundle",
    "load_uplift_model",
    "coupon_terms",
    "plan_campaign",
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

    from experiments.evaluate_uplift import score

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
    """The registered artifact: `model` plus every shopper's features as of the marketplace's end
    (channel `site`, where the API offers coupons) and the known coupons' kinds."""
    import json

    directory = Path(data_dir)
    shoppers = pd.read_parquet(directory / "shoppers.parquet")
    events = pd.read_parquet(directory / "events", columns=list(EVENT_COLUMNS)).dropna(subset=["shopper_id"])
    manifest = directory / "manifest.json"
    as_of = pd.Timestamp(json.loads(manifest.read_text())["end"]) if manifest.exists() else events["ts"].max()
    columns = list(model.feature_names_in_)
    features = encode_features(shopper_history_features(events, shoppers, as_of, "site"), columns)
    newcomer = pd.DataFrame(
        {"shopper_id": ["new"], "region": ["unknown"], "segment": [None], "created_at": [as_of]}
    )
    new_shopper = encode_features(shopper_history_features(events.iloc[:0], newcomer, as_of, "site"), columns)
    kinds = pd.read_parquet(directory / "coupons.parquet", columns=["coupon_id", "kind"])
    return ServedCouponUplift(
        model,
        features,
        new_shopper.iloc[0].to_numpy(),
        dict(zip(kinds["coupon_id"], kinds["kind"], strict=True)),
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
    import mlflow

    from training.registry import register_and_maybe_promote
    from training.tracking import metric_key, use_tracking

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
        mlflow.sklearn.log_model(
            serving_bundle(data_dir, model),
            name=ARTIFACT_NAME,
            serialization_format="cloudpickle",
            pyfunc_predict_fn="predict",
            pip_requirements=["scikit-learn", "lightgbm", "numpy", "pandas"],
        )
        run_id = run.info.run_id
    promotion = register_and_maybe_promote(
        run_id, ARTIFACT_NAME, registered_name, "qini_auc", metrics["qini_auc"], tracking_uri=tracking_uri
    )
    return {"run_id": run_id, "metrics": metrics, "params": params, "promotion": promotion}


def load_uplift_model(tracking_uri: str, name: str, alias: str = "champion") -> CouponEffectModel:
    """The effect model inside the registered `name@alias`; ModelUnavailable (clear message) when
    there is none or it is not one of ours."""
    import mlflow
    from mlflow import MlflowClient

    from training.registry import ModelUnavailable, champion_version

    version = champion_version(MlflowClient(tracking_uri=tracking_uri), name, alias)
    if version is None:
        raise ModelUnavailable(
            f"no uplift model registered as {name}@{alias}; run `crosscart train uplift --data DIR` "
            "or plan with a marketplace directory to fit one"
        )
    try:
        mlflow.set_tracking_uri(tracking_uri)
        model = mlflow.sklearn.load_model(f"models:/{name}/{version.version}")
    except Exception as exc:  # unreadable artifacts fail with many exception types
        raise ModelUnavailable(f"cannot load {name} version {version.version}: {exc}") from exc
    if not isinstance(model, ServedCouponUplift):
        raise ModelUnavailable(
            f"{name} version {version.version} is a {type(model).__name__}, not a ServedCouponUplift; "
            "retrain it with `crosscart train uplift`"
        )
    return model.effect_model


def coupon_terms(session: Session, campaign_id: str) -> pd.DataFrame:
    """The campaign's coupons as the planner's terms: coupon_id, kind, face_value, cap, min_spend."""
    from sqlalchemy import select

    from commerce.coupons import Coupon

    coupons = list(
        session.scalars(select(Coupon).where(Coupon.campaign_id == campaign_id).order_by(Coupon.coupon_id))
    )
    if not coupons:
        raise ValueError(f"campaign {campaign_id!r} has no coupons (create them with its campaign_id)")
    return pd.DataFrame(
        {
            "coupon_id": [c.coupon_id for c in coupons],
            "kind": [c.kind for c in coupons],
            "face_value": [c.value for c in coupons],
            "cap": [c.cap for c in coupons],
            "min_spend": [c.min_spend for c in coupons],
        }
    )


def _db_shoppers(session: Session, region: str | None, segment: str | None) -> pd.DataFrame:
    from sqlalchemy import select

    from commerce.shoppers import Shopper

    query = select(Shopper.shopper_id, Shopper.region, Shopper.segment, Shopper.created_at)
    if region is not None:
        query = query.where(Shopper.region == region)
    if segment is not None:
        query = query.where(Shopper.segment == segment)
    rows = session.execute(query.order_by(Shopper.shopper_id)).all()
    return pd.DataFrame(rows, columns=["shopper_id", "region", "segment", "created_at"])


def _db_events(session: Session, shopper_ids: list[str], as_of: datetime) -> pd.DataFrame:
    """The events the features read, before `as_of`: all purchases and redemptions, views and carts
    of the last SHORT_DAYS only (they are most of the log), in chunks of shopper ids."""
    from sqlalchemy import and_, or_, select

    from commerce.events import BehaviorEvent

    cols = [getattr(BehaviorEvent, c) for c in EVENT_COLUMNS]
    wanted = or_(
        BehaviorEvent.event_type.in_(("purchase", "coupon_redeem")),
        and_(
            BehaviorEvent.event_type.in_(("view", "cart")), BehaviorEvent.ts >= as_of - timedelta(SHORT_DAYS)
        ),
    )
    rows = []
    for start in range(0, len(shopper_ids), 5000):
        query = select(*cols).where(
            BehaviorEvent.shopper_id.in_(shopper_ids[start : start + 5000]), BehaviorEvent.ts < as_of, wanted
        )
        rows.extend(session.execute(query).all())
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def plan_campaign(
    session_factory: sessionmaker[Session],
    campaign_id: str,
    *,
    model: CouponEffectModel | CouponTermsEffectModel | None = None,
    market_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    model_name: str | None = None,
    alias: str | None = None,
    events_path: str | Path | None = None,
    region: str | None = None,
    segment: str | None = None,
    margin_rate: float | Decimal = 0.3,
    method: str = "lagrangian",
    random_state: int | None = 0,
) -> planner.CampaignPlan:
    """Plan a draft campaign from the database and store the audience (one transaction).

    Candidates: the shoppers in the database (optionally of one `region` / `segment`), with features
    from their events before the campaign starts, read from the events table or, when
    `events_path` is given, from that exported Parquet dataset. Effects: `model` when given, else one
    freshly fitted on `market_dir` (a `CouponTermsEffectModel`: each coupon's effect from its terms,
    the plan kept within budget by the model's learned `cost_factor_`), else the registered
    `model_name@alias` (defaults: Settings.uplift_model_name, Settings.model_alias,
    Settings.resolved_mlflow_uri); ModelUnavailable when none is registered. Coupons: the
    campaign's; a per-kind `CouponEffectModel` maps each to its kind's learned effect.
    """
    from commerce.campaigns import get_campaign, set_audience
    from commerce.db import transaction
    from commerce.errors import InvalidState

    if model is None and market_dir is not None:
        model = fit_terms_model(market_dir, seed=0 if random_state is None else random_state)
    elif model is None:
        from crosscart.settings import get_settings

        settings = get_settings()
        model = load_uplift_model(
            tracking_uri or settings.resolved_mlflow_uri,
            model_name or settings.uplift_model_name,
            alias or settings.model_alias,
        )
    with transaction(session_factory) as session:
        campaign = get_campaign(session, campaign_id)
        if campaign.status != "draft":  # set_audience would refuse too, after all the work
            raise InvalidState(f"campaign {campaign_id!r} is {campaign.status}; only a draft can be planned")
        terms = coupon_terms(session, campaign_id)
        per_kind = not isinstance(model, CouponTermsEffectModel)
        unknown = sorted(set(terms["kind"]) - set(map(str, model.arms_))) if per_kind else []
        if unknown:
            raise ValueError(f"the effect model learned no {unknown} coupons (it knows {list(model.arms_)})")
        shoppers = _db_shoppers(session, region, segment)
        if shoppers.empty:
            raise ValueError(f"no shoppers in the database match region={region!r}, segment={segment!r}")
        ids = shoppers["shopper_id"].tolist()
        if events_path is not None:
            events = pd.read_parquet(events_path, columns=list(EVENT_COLUMNS))
            events = events[events["shopper_id"].isin(ids)]
        else:
            events = _db_events(session, ids, campaign.starts_at)
        table = shopper_history_features(events, shoppers, campaign.starts_at, campaign.channel)
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            raise ValueError("the effect model was fitted without feature names; fit it on a DataFrame")
        X = encode_features(table, list(names))
        if per_kind:
            by_kind = model.predict_candidates(X, table.index.to_numpy())
            candidates = pd.concat(
                [
                    by_kind[by_kind["coupon_id"] == kind].assign(coupon_id=coupon)
                    for coupon, kind in zip(terms["coupon_id"], terms["kind"], strict=True)
                ],
                ignore_index=True,
            )
        else:
            candidates = model.predict_candidates(X, table.index.to_numpy(), terms)
        plan = planner.plan_campaign(
            candidates,
            terms,
            campaign.budget,
            margin_rate=margin_rate,
            control_share=float(campaign.control_share),
            method=method,
            random_state=random_state,
            cost_safety=1.0 if per_kind else model.cost_factor_,
        )
        members = zip(plan.assignments["shopper_id"], plan.assignments["arm"], strict=True)
        set_audience(session, campaign_id, list(members))
    return plan
