"""The ranker trained through lightgbm.dask on a 2-worker LocalCluster ranks as well as in-process."""

from __future__ import annotations

import pickle

from experiments.metrics import ranking_metrics
from models.recommenders import make_recommender
from tests.models.test_ranker import FAST, rotating_catalogue


def _ndcg(model, truth: dict[str, set[str]]) -> float:
    users = sorted(truth)
    recs = model.recommend(users, n=10)
    lists = {u: [i for i, _ in r] for u, r in zip(users, recs, strict=True)}
    return ranking_metrics(lists, truth, k=10)["ndcg@10"]


def test_dask_trained_ranker_ndcg_within_one_percent_of_in_process():
    from distributed import Client, LocalCluster

    # enough shoppers that the metric, not the split of rows between workers, decides (480 varied by 2%)
    data, test = rotating_catalogue(n_users=3000, per_period=30)
    truth: dict[str, set[str]] = {}
    for u, i in test:
        truth.setdefault(u, set()).add(i)
    local = make_recommender("ranker", **FAST).fit(data)
    with (
        LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = make_recommender("ranker", **FAST).fit(data, client=client)
    assert remote.feature_names_ == local.feature_names_
    assert remote.booster_.num_trees() > 0
    assert remote.booster_.model_to_string() != local.booster_.model_to_string()  # really trained apart
    base = _ndcg(local, truth)
    assert base > 0.2
    assert abs(_ndcg(remote, truth) - base) <= 0.01 * base
    assert not hasattr(remote, "_client")  # the client is not part of the fitted (pickled) model
    pickle.loads(pickle.dumps(remote))
