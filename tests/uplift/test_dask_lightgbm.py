"""Uplift learners with LightGBM trained through lightgbm.dask rank as well as the in-process ones."""

from __future__ import annotations

import pickle

import numpy as np

from experiments.uplift_metrics import qini_auc_score
from models.uplift.dask_lightgbm import DaskLightGBMClassifier, DaskLightGBMRegressor
from models.uplift.learners import TLearner, XLearner
from models.uplift.simulate import hillstrom_like


def _campaign(n: int, seed: int):
    data, _ = hillstrom_like(n=n, seed=seed)
    data = data[data["segment"] != "Womens E-Mail"]
    X = data[["recency", "history", "mens", "womens", "newbie"]].to_numpy(float)
    return X, (data["segment"] == "Mens E-Mail").astype(int).to_numpy(), data["visit"].to_numpy()


def test_dask_trained_t_learner_matches_the_in_process_one():
    from distributed import Client, LocalCluster

    X, t, y = _campaign(40_000, 1)
    Xt, tt, yt = _campaign(40_000, 2)
    local = TLearner().fit(X, t, y)
    with (
        LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
    ):
        remote = TLearner(estimator=DaskLightGBMClassifier()).fit(X, t, y)
        x_learner = XLearner(
            estimator=DaskLightGBMClassifier(), effect_estimator=DaskLightGBMRegressor()
        ).fit(X, t, y)
    remote = pickle.loads(pickle.dumps(remote))  # the fitted model no longer needs the cluster
    u_local, u_remote = local.predict_uplift(Xt), remote.predict_uplift(Xt)
    assert np.corrcoef(u_local, u_remote)[0, 1] > 0.9
    q_local, q_remote = qini_auc_score(yt, u_local, tt), qini_auc_score(yt, u_remote, tt)
    assert q_local > 0.03  # a real signal to compare (random ranking scores 0)
    assert abs(q_remote - q_local) <= 0.1 * q_local, (q_local, q_remote)
    assert qini_auc_score(yt, x_learner.predict_uplift(Xt), tt) > 0.5 * q_local
