"""The offline study runner: TOML in, MLflow parent/child runs and a report out, reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.recommenders.base import Recommender
from training.study import load_study, mean_ci, run_study


class TinyPopular(Recommender):
    """Most popular items plus seeded noise of size `noise`, so seeds change results."""

    name = "tiny"

    def __init__(self, noise: float = 0.0, random_state: int | None = 0):
        self.noise = noise
        self.random_state = random_state

    def fit(self, data):
        rng = np.random.default_rng(self.random_state)
        counts = np.asarray(data.matrix.sum(axis=0)).ravel()
        self.scores_ = counts + self.noise * rng.random(len(counts)) * counts.max()
        self.data_ = data
        return self

    def recommend(self, user_ids, n=10, exclude_seen=True, candidates=None):
        order = np.argsort(-self.scores_, kind="stable")
        out = []
        for user in user_ids:
            row = self.data_.user_index.get(user)
            if row is None:
                out.append([])
                continue
            seen = set(self.data_.matrix[row].indices) if exclude_seen else set()
            out.append(
                [(str(self.data_.item_ids[j]), float(self.scores_[j])) for j in order if j not in seen][:n]
            )
        return out

    def similar_items(self, item_id, n=10):
        return []

    def save(self, path):
        raise NotImplementedError("not needed by the study runner")

    @classmethod
    def load(cls, path):
        raise NotImplementedError("not needed by the study runner")


def tiny_factory(name, params, seed):
    if name != "tiny":
        raise ValueError(f"unknown model {name!r}")
    return TinyPopular(**{"random_state": seed, **params})


def write_ratings(path, n_users=60, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    popularity = rng.zipf(1.5, n_items).astype(float)
    lines = []
    for u in range(1, n_users + 1):
        items = rng.choice(n_items, size=12, replace=False, p=popularity / popularity.sum())
        lines += [
            f"{u}\t{i + 1}\t{rng.integers(1, 6)}\t{880000000 + u * 100 + k}" for k, i in enumerate(items)
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


STUDY = """
name = "tiny-study"
dataset = "movielens:{data}"
split = "stratified-item:0.75:42"
k = 5
metrics = ["map", "ndcg@{{k}}"]
seeds = [1, 2, 3]

[[models]]
name = "tiny"
grid = {{ noise = [0.0, 0.5] }}

[reference."paper"]
map = 0.1234
"""


@pytest.fixture
def study_file(tmp_path):
    data = write_ratings(tmp_path / "u.data")
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(data=data))
    return path


def test_run_study_logs_parent_and_children_and_writes_the_report(study_file, tmp_path, tracking_uri):
    import mlflow

    uri = tracking_uri
    study = load_study(study_file)
    result = run_study(study, tmp_path / "out", tracking_uri=uri, factory=tiny_factory, log=lambda _: None)
    # noise=0 cannot depend on the seed... but the factory passes random_state, so each seed runs.
    assert len(result.runs) == 6
    assert set(result.summary.model) == {"tiny(noise=0.0)", "tiny(noise=0.5)"}
    quiet = result.runs[result.runs.model == "tiny(noise=0.0)"]
    assert quiet["map"].nunique() == 1  # no noise: identical across seeds
    noisy = result.summary.set_index("model").loc["tiny(noise=0.5)"]
    assert noisy["map_low"] <= noisy["map_mean"] <= noisy["map_high"]

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("study-tiny-study")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == result.parent_run_id]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(parent) == 1 and len(children) == 6
    assert {c.data.params["seed"] for c in children} == {"1", "2", "3"}
    assert all("ndcg_at_5" in c.data.metrics for c in children)
    assert parent[0].data.params["study_sha256"] == study.source_sha256

    report = result.report_path.read_text()
    assert "| tiny(noise=0.5) | 3 |" in report and "metrics.png" in report
    assert "| paper | 0.1234 |  |" in report
    assert (tmp_path / "out" / "metrics.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["mlflow_parent_run"] == result.parent_run_id


def test_study_is_reproducible_from_file_and_seed(study_file, tmp_path):
    study = load_study(study_file, seeds=[7])
    a = run_study(study, tmp_path / "a", tracking_uri=None, factory=tiny_factory, log=lambda _: None)
    b = run_study(study, tmp_path / "b", tracking_uri=None, factory=tiny_factory, log=lambda _: None)
    cols = ["model", "seed", "map", "ndcg@5"]
    assert a.runs[cols].equals(b.runs[cols])
    assert a.parent_run_id is None


def test_registry_models_and_deterministic_configs_run_once(study_file, tmp_path):
    text = study_file.read_text().replace(
        'name = "tiny"\ngrid = { noise = [0.0, 0.5] }', 'name = "popularity"'
    )
    study_file.write_text(text)
    result = run_study(load_study(study_file), tmp_path / "out", tracking_uri=None, log=lambda _: None)
    assert list(result.runs.seed) == [1]  # popularity takes no seed and the split is fixed
    assert np.isnan(result.summary.loc[0, "map_low"])
    assert 0 < result.runs.loc[0, "map"] <= 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('split = "stratified-item:0.75:42"\n', ""), "missing required key 'split'"),
        (lambda t: "bogus = 1\n" + t, "unknown keys"),
        (lambda t: t.replace("seeds = [1, 2, 3]", "seeds = [1, 1]"), "without repeats"),
        (lambda t: t.replace("noise = [0.0, 0.5]", "noise = []"), "non-empty lists"),
        (lambda t: t.replace("k = 5", "k = [", 1), "not valid TOML"),
        (lambda t: t.replace("map = 0.1234", 'map = "high"'), "reference must map"),
    ],
)
def test_bad_study_files_are_refused(study_file, edit, message):
    study_file.write_text(edit(study_file.read_text()))
    with pytest.raises(ValueError, match=message):
        load_study(study_file)


def test_unknown_metric_and_model_fail_before_fitting(study_file, tmp_path):
    study_file.write_text(study_file.read_text().replace('"map", ', '"nope", '))
    with pytest.raises(ValueError, match="metrics \\['nope'\\] are not computed"):
        run_study(
            load_study(study_file),
            tmp_path / "o",
            tracking_uri=None,
            factory=tiny_factory,
            log=lambda _: None,
        )
    study_file.write_text(study_file.read_text().replace('name = "tiny"', 'name = "nosuch"'))
    with pytest.raises(ValueError, match="unknown model"):
        run_study(
            load_study(study_file),
            tmp_path / "o",
            tracking_uri=None,
            factory=tiny_factory,
            log=lambda _: None,
        )


def test_mean_ci_is_a_t_interval():
    from scipy import stats

    values = [0.1, 0.2, 0.15, 0.12]
    mean, lo, hi = mean_ci(values)
    ref = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert (lo, hi) == pytest.approx(ref)
    assert np.isnan(mean_ci([0.3])[1])


def test_a_study_that_fails_part_way_ends_its_parent_run_failed(study_file, tmp_path, tracking_uri):
    """The parent run was ended FINISHED whatever happened (a model failing, a SIGTERM: the command's
    `Terminated`), so a study that stopped half-way passed for a finished one in MLflow."""
    import mlflow

    calls = []

    def failing_factory(name, params, seed):
        calls.append(name)
        if len(calls) > 3:  # after the checks of every configuration and the first fit
            raise RuntimeError("out of memory")
        return tiny_factory(name, params, seed)

    with pytest.raises(RuntimeError, match="out of memory"):
        run_study(load_study(study_file), tmp_path / "o", tracking_uri=tracking_uri, factory=failing_factory,
                  log=lambda _: None)  # fmt: skip
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("study-tiny-study").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parent] == ["FAILED"]
