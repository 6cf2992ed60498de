"""Training pipelines: fit, evaluate on a held-out split, log to MLflow, register, promote.

- `train_recommender`: one model. Fits on the train split, scores the test split
  (`training.evaluate_recommender`: Recommenders' protocol), logs params, metrics (the chosen metric,
  the beyond-accuracy ones, and each ranking metric per k as an MLflow step series), two PNG figures
  (metric@k curves; popularity of recommended items) and the model (a pyfunc around the saved recommender).
  Unless `refit=False`, the logged model is refitted on ALL the data first, so the served model has seen
  everything; the metrics still describe the train-split fit. Then it registers the model and moves the
  alias only if it beats the champion (`training.registry.register_and_maybe_promote`).
- `search_recommender`: optuna (TPE, seeded) or a grid; one parent run, one child run per trial, the
  best parameters logged on the parent; optionally the best is then trained and registered.
- `train_demo_recommender`: the demo's entry; trains the default models on a generated marketplace and
  does nothing when the champion already came from the same data and configuration.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.interactions import InteractionData, build_interactions
from training.evaluate_recommender import Dataset, EvaluationSetup, evaluate_model, load_dataset, prepare
from training.registry import Promotion, champion_version, register_and_maybe_promote
from training.tracking import metric_key, use_tracking

DEFAULT_EXPERIMENT = "crosscart-recommenders"
DEFAULT_METRIC = "ndcg@10"
CURVE_KS = (1, 5, 10, 20, 50)
MODEL_ARTIFACT = "model"
FINGERPRINT_TAG = "crosscart.data_fingerprint"
DEMO_FINGERPRINT_TAG = "crosscart.demo_fingerprint"
PROMOTED_TAG = "crosscart.promoted"  # on a run, once its version was judged against the champion
# the demo's shoppers rebuy (repurchasable categories) and serving shows those repeats: the ranker, which
# decides between buying again and exploring, is scored against the rest with repeats counted
DEMO_MODELS = ("popularity", "gp-topfreq", "als", "ranker")
DEMO_SPLIT = "temporal:0.8"
DEMO_INCLUDE_SEEN = True
# one held-out share instead of two: a third fewer base-model fits, half the ranking rows at start-up
DEMO_PARAMS: dict[str, dict[str, Any]] = {"ranker": {"n_folds": 1}}
# what training.evaluate_recommender.evaluate_model reports: per list length k, and on top-k lists
RANKED_METRICS = ("ndcg", "precision", "recall", "hit_rate", "mrr")
LIST_METRICS = ("map", "coverage", "novelty", "diversity", "popularity_percentile", "arp")
LOWER_IS_BETTER = ("arp", "popularity_percentile")  # popularity bias: smaller is better


@dataclass(frozen=True)
class TrainingData:
    """A dataset and its split: what pipelines fit, score and (for the refit) train on in full."""

    dataset: Dataset
    setup: EvaluationSetup
    split: str
    source: str
    event_weights: Mapping[str, float] | None = None
    half_life_days: float | None = None

    def full(self) -> InteractionData:
        """All events as interactions, built exactly like the train split."""
        return build_interactions(
            self.dataset.events,
            event_weights=self.event_weights,
            half_life_days=self.half_life_days,
            item_features=self.dataset.item_features,
            user_features=self.dataset.user_features,
        )

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of the events and the split: equal fingerprints mean comparable metrics."""
        digest = hashlib.sha256(self.split.encode())
        if self.setup.include_seen:  # repeats counted: other figures, not comparable with the default
            digest.update(b"include-seen")
        digest.update(pd.util.hash_pandas_object(self.dataset.events, index=False).to_numpy().tobytes())
        return digest.hexdigest()[:16]


def load_training_data(
    data: str,
    split: str,
    *,
    event_weights: Mapping[str, float] | None = None,
    half_life_days: float | None = None,
    include_seen: bool = False,
    **columns: str | None,
) -> TrainingData:
    """Read a data spec (`movielens:PATH`, `events:FILE`, `synthetic:DIR`) and split it (`temporal:0.8`...).

    `columns` are the `events:FILE` column names (`user_col`, `item_col`, `time_col`, ...);
    `include_seen` scores with repeat purchases counted (see `training.evaluate_recommender`).
    """
    dataset = load_dataset(data, **columns)
    setup = prepare(
        dataset, split, event_weights=event_weights, half_life_days=half_life_days, include_seen=include_seen
    )
    return TrainingData(dataset, setup, split, data, event_weights, half_life_days)


def parse_metric(metric: str) -> tuple[str, int]:
    """`ndcg@10` -> (`ndcg@10`, 10); `map` -> (`map`, 10): `map` and the beyond-accuracy metrics use k=10.

    Checked against what `training.evaluate_recommender.evaluate_model` reports, so a typo fails
    before anything is fitted.
    """
    name, sep, k_text = metric.partition("@")
    if name not in RANKED_METRICS + LIST_METRICS:
        raise ValueError(
            f"unknown metric {metric!r}; choose from {', '.join(m + '@K' for m in RANKED_METRICS)}, "
            f"{', '.join(LIST_METRICS)}"
        )
    if not sep:
        if name in RANKED_METRICS:
            raise ValueError(f"metric {metric!r} needs a list length, e.g. {name}@10")
        return metric, 10
    if name not in RANKED_METRICS:
        raise ValueError(f"metric {name!r} takes no @k (it is computed on top-10 lists)")
    try:
        k = int(k_text)
    except ValueError:
        raise ValueError(f"bad metric {metric!r}: the part after @ must be an integer k") from None
    if k < 1:
        raise ValueError(f"bad metric {metric!r}: k must be >= 1")
    return f"{name}@{k}", k


def higher_is_better(metric: str) -> bool:
    return metric.partition("@")[0] not in LOWER_IS_BETTER


@dataclass(frozen=True)
class TrainingResult:
    """What `train_recommender` did: the run, the held-out figures and the registry outcome."""

    run_id: str
    model: str
    params: dict[str, Any]
    metric: str
    value: float
    metrics: dict[str, float]
    promotion: Promotion | None = None

    def __str__(self) -> str:
        """One line for consoles: `als ndcg@10=0.1268 -> crosscart-recommender v2 (champion)`."""
        line = f"{self.model} {self.metric}={self.value:.4f}"
        if self.promotion is None:
            return f"{line} (not registered)"
        p = self.promotion
        return (
            f"{line} -> {p.model_name} v{p.version} ({p.alias if p.promoted else 'not promoted'}: {p.reason})"
        )


def _numeric(row: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    }


def _score(model, data: TrainingData, metric: str) -> tuple[dict[str, float], float]:
    """Fit on the train split and evaluate; returns (all numeric figures, the chosen metric's value)."""
    name, k = parse_metric(metric)
    figures = _numeric(evaluate_model(model, data.setup, k))
    if name not in figures:
        choices = sorted(m for m in figures if m not in ("k", "n_users", "n_test_users", "n_cold_users"))
        raise ValueError(f"metric {metric!r} is not reported by the evaluation; choose from {choices}")
    return figures, figures[name]


def _top_lists(model, setup: EvaluationSetup, n: int) -> dict[str, list[str]]:
    """Each test user's top-n list (seen items excluded unless the setup counts repeats); users the model
    cannot serve are left out."""
    users = list(setup.relevant)
    ranked = model.recommend(users, n=n, exclude_seen=not setup.include_seen)
    return {u: [item for item, _ in items] for u, items in zip(users, ranked, strict=True) if items}


def _curves(recommended: dict[str, list[str]], setup: EvaluationSetup, ks: Sequence[int]):
    """Ranking metrics at every k, from one top-max(k) list per test user."""
    from experiments.metrics import ranking_metrics

    curves: dict[str, dict[int, float]] = {m: {} for m in RANKED_METRICS}
    for k in ks:
        row = ranking_metrics(recommended, setup.relevant, k)
        for m in RANKED_METRICS:
            curves[m][k] = float(row[f"{m}@{k}"])
    return curves


def _log_curves(tracking_uri: str, run_id: str, curves: dict[str, dict[int, float]]) -> None:
    """Each ranking metric as a series over k (MLflow step = k), in one batch write."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(f"{name}_curve", v, now, at) for name, by_k in curves.items() for at, v in by_k.items()]
    MlflowClient(tracking_uri).log_batch(run_id, metrics=batch)


def _log_figures(
    recommended: dict[str, list[str]],
    train: InteractionData,
    curves: dict[str, dict[int, float]],
    k: int,
    title: str,
) -> None:
    import mlflow

    from training.plots import metric_at_k_figure, popularity_figure

    counts = np.diff(train.matrix.tocsc().indptr)
    item_counts = dict(zip(train.item_ids.tolist(), counts.tolist(), strict=True))
    shown = [item for items in recommended.values() for item in items[:k]]
    mlflow.log_figure(metric_at_k_figure(curves, title=f"{title}: metrics at k"), "plots/metric_at_k.png")
    mlflow.log_figure(
        popularity_figure(shown, item_counts, title=f"{title}: popularity of recommended items (top {k})"),
        "plots/recommended_popularity.png",
    )


def train_recommender(
    data: TrainingData,
    model: str,
    params: Mapping[str, Any] | None = None,
    *,
    tracking_uri: str,
    metric: str = DEFAULT_METRIC,
    experiment: str = DEFAULT_EXPERIMENT,
    registered_name: str = "crosscart-recommender",
    alias: str = "champion",
    register: bool = True,
    refit: bool = True,
    force_promote: bool = False,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Fit, evaluate, log and (by default) register one recommender; see the module docstring."""
    import mlflow

    from models.recommenders import make_recommender
    from training.pyfunc import log_recommender

    params = dict(params or {})
    metric, k = parse_metric(metric)
    estimator = make_recommender(model, **params)  # unknown names/params fail before any run exists
    _, experiment_id = use_tracking(tracking_uri, experiment)
    fingerprint = data.fingerprint
    run_tags = {FINGERPRINT_TAG: fingerprint, "crosscart.model": model, **(tags or {})}
    nested = mlflow.active_run() is not None  # e.g. called from a study's parent run
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name or model, tags=run_tags, nested=nested
    ) as run:
        mlflow.log_params(params)  # model parameters under their own names, for run comparison
        train = data.setup.train
        pipeline = {
            "model": model,
            "data": data.source,
            "split": data.split,
            "metric": metric,
            "refit": refit,
            "train_users": train.n_users,
            "train_items": train.n_items,
            "train_interactions": train.matrix.nnz,
            "test_users": len(data.setup.relevant),
        }
        mlflow.log_params({f"pipeline.{name}": value for name, value in pipeline.items()})
        figures, value = _score(estimator, data, metric)
        mlflow.log_metrics({metric_key(name): v for name, v in figures.items()})
        ks = sorted(set(CURVE_KS) | {k})
        recommended = _top_lists(estimator, data.setup, max(ks))
        curves = _curves(recommended, data.setup, ks)
        _log_curves(tracking_uri, run.info.run_id, curves)
        _log_figures(recommended, data.setup.train, curves, k, model)
        mlflow.log_dict({"params": params, "figures": figures, "curves": curves}, "evaluation.json")

        served = estimator
        if refit:
            started = time.perf_counter()
            served = make_recommender(model, **params).fit(data.full())
            mlflow.log_metric("refit_seconds", time.perf_counter() - started)
        log_recommender(served, name=MODEL_ARTIFACT)
        promotion = None
        if register:
            promotion = register_and_maybe_promote(
                run.info.run_id, MODEL_ARTIFACT, registered_name, metric, value, higher_is_better(metric),
                alias=alias, tags={**run_tags, "crosscart.params": json.dumps(params, sort_keys=True)},
                force=force_promote,
            )  # fmt: skip
            mlflow.set_tags(
                {
                    "crosscart.registered_version": promotion.version,
                    PROMOTED_TAG: str(promotion.promoted).lower(),
                }
            )
    return TrainingResult(run.info.run_id, model, params, metric, value, figures, promotion)


@dataclass(frozen=True)
class SearchResult:
    """The parent run, every trial (params, value, child run id) and the best parameters."""

    parent_run_id: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    trials: list[tuple[dict[str, Any], float, str]] = field(default_factory=list)
    final: TrainingResult | None = None


def search_recommender(
    data: TrainingData,
    model: str,
    *,
    tracking_uri: str,
    space: str | None = None,
    grid: Sequence[str] | None = None,
    trials: int = 20,
    seed: int = 0,
    base_params: Mapping[str, Any] | None = None,
    metric: str = DEFAULT_METRIC,
    experiment: str = DEFAULT_EXPERIMENT,
    register: bool = False,
    registered_name: str = "crosscart-recommender",
    alias: str = "champion",
    refit: bool = True,
) -> SearchResult:
    """Search `space` (optuna TPE, `trials` trials) or every point of `grid`; log each trial as a child run.

    With `register`, the best parameters are then trained by `train_recommender` (its own run, tagged
    with the parent's id) and registered under the usual promotion rule.
    """
    import mlflow

    from models.recommenders import make_recommender
    from training.search import grid_size, make_study, parse_grid, parse_space

    if (space is None) == (not grid):
        raise ValueError("give exactly one of a search space or a grid")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    metric, _ = parse_metric(metric)
    base = dict(base_params or {})
    direction = "maximize" if higher_is_better(metric) else "minimize"
    if grid:
        grid_values = parse_grid(grid)
        study, n_trials = make_study(direction, seed, grid_values), grid_size(grid_values)

        def suggest(trial) -> dict[str, Any]:
            return {name: trial.suggest_categorical(name, values) for name, values in grid_values.items()}
    else:
        dims = parse_space(space)
        study, n_trials = make_study(direction, seed), trials

        def suggest(trial) -> dict[str, Any]:
            return {d.name: d.suggest(trial) for d in dims}

    searched = set(grid_values) if grid else {d.name for d in dims}
    if searched & set(base):
        raise ValueError(f"parameters both fixed and searched: {sorted(searched & set(base))}")
    make_recommender(model, **base)  # fail fast on a bad model name or fixed parameter
    _, experiment_id = use_tracking(tracking_uri, experiment)
    done: list[tuple[dict[str, Any], float, str]] = []
    fingerprint = data.fingerprint
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"search-{model}",
        tags={FINGERPRINT_TAG: fingerprint, "crosscart.model": model, "crosscart.search": "parent"},
    ) as parent:  # fmt: skip
        mlflow.log_params(
            {"pipeline.model": model, "pipeline.metric": metric, "pipeline.data": data.source,
             "pipeline.split": data.split, "search.seed": seed, "search.sampler": "grid" if grid else "tpe",
             "search.space": space or "; ".join(grid), "search.trials": n_trials,
             **{f"fixed.{name}": v for name, v in base.items()}}
        )  # fmt: skip

        def objective(trial) -> float:
            params = {**base, **suggest(trial)}
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"trial-{trial.number}", nested=True,
                tags={"crosscart.model": model, "crosscart.search": "trial"},
            ) as child:  # fmt: skip
                mlflow.log_params({"pipeline.model": model, **params})
                figures, value = _score(make_recommender(model, **params), data, metric)
                mlflow.log_metrics({metric_key(name): v for name, v in figures.items()})
            done.append((params, value, child.info.run_id))
            return value

        study.optimize(objective, n_trials=n_trials)
        best_params = {**base, **study.best_trial.params}
        mlflow.log_params({f"best.{name}": v for name, v in best_params.items()})
        mlflow.log_metric(f"best_{metric_key(metric)}", study.best_value)
        mlflow.set_tag("crosscart.best_trial_run", done[study.best_trial.number][2])

    final = None
    if register:
        final = train_recommender(
            data, model, best_params, tracking_uri=tracking_uri, metric=metric, experiment=experiment,
            registered_name=registered_name, alias=alias, refit=refit, run_name=f"{model}-best",
            tags={"crosscart.search_parent": parent.info.run_id},
        )  # fmt: skip
    return SearchResult(parent.info.run_id, metric, best_params, float(study.best_value), done, final)


@dataclass(frozen=True)
class DemoTraining:
    """The demo's outcome: either the runs it made, or the champion it kept because nothing changed."""

    fingerprint: str
    skipped: bool
    champion_version: str | None
    results: list[TrainingResult] = field(default_factory=list)


def demo_fingerprint(
    data_dir: Path, models: Sequence[str], split: str, metric: str, include_seen: bool = DEMO_INCLUDE_SEEN
) -> str:
    """The generated data (its manifest names scale, seed, generator version and counts) plus the config."""
    manifest = Path(data_dir) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{data_dir} has no manifest.json: generate the marketplace first")
    digest = hashlib.sha256(manifest.read_bytes())
    digest.update(json.dumps([list(models), split, metric, include_seen, DEMO_PARAMS]).encode())
    return digest.hexdigest()[:16]


def _judged(client, version) -> bool:
    """Whether the training that registered `version` got to its promotion decision (its run's
    PROMOTED_TAG, set just after it). A training killed between registering and deciding
    (SIGKILL, the OOM killer) left a version never compared with the champion: the demo's rerun counted
    its model as done and skipped it, so a better model was never promoted."""
    from mlflow.exceptions import MlflowException

    try:
        return PROMOTED_TAG in client.get_run(version.run_id).data.tags
    except MlflowException:  # the run was deleted
        return False


def train_demo_recommender(
    settings,
    data_dir: str | Path,
    *,
    models: Sequence[str] = DEMO_MODELS,
    split: str = DEMO_SPLIT,
    metric: str = DEFAULT_METRIC,
    experiment: str = "crosscart-demo",
    include_seen: bool = DEMO_INCLUDE_SEEN,
) -> DemoTraining:
    """Train `models` on the generated marketplace in `data_dir`, register them, promote the best.

    Re-running is cheap and resumable: versions carry a fingerprint of the data and configuration;
    models already registered with it and judged against the champion (`_judged`) are not trained
    again, and when all are and the champion has it too, nothing happens (`skipped`). When the
    champion came from other data its metric is not comparable, so the first model trained on the
    new data takes the alias and the rest must beat it.
    """
    from mlflow import MlflowClient

    fingerprint = demo_fingerprint(Path(data_dir), models, split, metric, include_seen)
    uri = settings.resolved_mlflow_uri
    use_tracking(uri, experiment)
    client = MlflowClient(uri)
    champion = champion_version(client, settings.model_name, settings.model_alias)
    current = champion is not None and (champion.tags or {}).get(DEMO_FINGERPRINT_TAG) == fingerprint
    registered = {
        version.tags.get("crosscart.model")
        for version in client.search_model_versions(f"name = '{settings.model_name}'")
        if (version.tags or {}).get(DEMO_FINGERPRINT_TAG) == fingerprint and _judged(client, version)
    }
    todo = [model for model in models if model not in registered]
    if current and not todo:
        return DemoTraining(fingerprint, skipped=True, champion_version=str(champion.version))
    data = load_training_data(f"synthetic:{data_dir}", split, include_seen=include_seen)
    results = []
    for model in todo:
        results.append(
            train_recommender(
                data,
                model,
                DEMO_PARAMS.get(model),
                tracking_uri=uri,
                metric=metric,
                experiment=experiment,
                registered_name=settings.model_name,
                alias=settings.model_alias,
                force_promote=champion is not None and not current,
                tags={DEMO_FINGERPRINT_TAG: fingerprint},
            )
        )
        current = True  # from now on the champion (old or new) has been compared on this data
    champion = champion_version(client, settings.model_name, settings.model_alias)
    return DemoTraining(fingerprint, False, None if champion is None else str(champion.version), results)
