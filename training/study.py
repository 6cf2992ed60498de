"""Offline studies: one TOML file (dataset, split, models with parameter grids, metrics, seeds) in,
MLflow runs and a Markdown report with a table and plots out.

Reproducible from the file and its seeds: every random choice (the split when its spec contains
`{seed}`, the model's `random_state`) is driven by a listed seed. A configuration that no seed can
change (a deterministic model on a fixed split) runs once instead of once per seed. Confidence
intervals are t intervals of the mean across seeds. MLflow gets one parent run per study and one child
run per model configuration and seed. File format: docs/experiments.md.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from commerce.files import atomic_path
from models.recommenders.base import Recommender
from training.evaluate_recommender import evaluate_model, load_dataset, make_model, prepare
from training.search import grid_points
from training.tracking import use_tracking

DEFAULT_METRICS = ("map", "ndcg@{k}", "precision@{k}", "recall@{k}")
ModelFactory = Callable[[str, Mapping[str, Any], int], Recommender]


@dataclass(frozen=True)
class ModelSpec:
    """A model by registry name, fixed parameters and a grid (every combination is one configuration)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    label: str = ""

    def configurations(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, parameters) per grid point; labels are unique and readable."""
        points = grid_points(self.grid) if self.grid else [{}]
        base = self.label or self.name
        out = []
        for point in points:
            suffix = ",".join(f"{k}={v}" for k, v in point.items())
            out.append((f"{base}({suffix})" if suffix else base, {**self.params, **point}))
        return out


@dataclass(frozen=True)
class Study:
    name: str
    dataset: str
    split: str
    models: tuple[ModelSpec, ...]
    seeds: tuple[int, ...] = (42,)
    k: int = 10
    metrics: tuple[str, ...] = ()
    description: str = ""
    reference: dict[str, dict[str, float]] = field(default_factory=dict)  # published figures to compare
    source_sha256: str = ""
    source_text: str = ""

    @property
    def metric_names(self) -> list[str]:
        return [m.format(k=self.k) for m in (self.metrics or DEFAULT_METRICS)]


def load_study(path: str | Path, *, data: str | None = None, seeds: Sequence[int] | None = None) -> Study:
    """Read and check a study file. `data` overrides the dataset spec, `seeds` the seed list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study file at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    known = {"name", "description", "dataset", "split", "models", "seeds", "k", "metrics", "reference"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    for key in ("name", "dataset", "split", "models"):
        if key not in raw:
            raise ValueError(f"{path}: missing required key {key!r}")
    models = []
    for i, m in enumerate(raw["models"]):
        if "name" not in m:
            raise ValueError(f"{path}: models[{i}] has no name")
        extra = set(m) - {"name", "params", "grid", "label"}
        if extra:
            raise ValueError(f"{path}: models[{i}] has unknown keys {sorted(extra)}")
        grid = m.get("grid", {})
        if any(not isinstance(v, list) or not v for v in grid.values()):
            raise ValueError(f"{path}: models[{i}].grid values must be non-empty lists")
        models.append(ModelSpec(m["name"], dict(m.get("params", {})), dict(grid), m.get("label", "")))
    if not models:
        raise ValueError(f"{path}: list at least one model")
    seed_list = tuple(int(s) for s in (seeds if seeds else raw.get("seeds", [42])))
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"{path}: seeds must be a non-empty list without repeats")
    k = int(raw.get("k", 10))
    if k < 1:
        raise ValueError(f"{path}: k must be >= 1")
    reference = raw.get("reference", {})
    if not all(
        isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
        for v in reference.values()
    ):
        raise ValueError(f"{path}: reference must map a label to {{metric = number}} tables")
    labels = [label for spec in models for label, _ in spec.configurations()]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: two model configurations share a label; give models a `label`")
    return Study(
        name=str(raw["name"]),
        dataset=data or str(raw["dataset"]),
        split=str(raw["split"]),
        models=tuple(models),
        seeds=seed_list,
        k=k,
        metrics=tuple(raw.get("metrics", ())),
        description=str(raw.get("description", "")),
        reference=reference,
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
        source_text=text,
    )


def registry_model(name: str, params: Mapping[str, Any], seed: int) -> Recommender:
    """`models.recommenders.make_recommender`, with `random_state=seed` when the model takes one."""
    from models.recommenders import REGISTRY  # looked up per call: tests swap the registry

    params = dict(params)
    cls = REGISTRY.get(name)
    if cls is not None and "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", seed)
    return make_model(name, params)


def _seed_matters(study: Study, name: str, params: Mapping[str, Any], factory: ModelFactory) -> bool:
    """Whether runs with different seeds can differ: a seeded split, or a seeded model."""
    if "{seed}" in study.split:
        return True
    if "random_state" in params:
        return False
    a, b = factory(name, params, 0), factory(name, params, 1)
    return getattr(a, "random_state", None) != getattr(b, "random_state", None)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval across seeds; the interval is NaN with fewer than two runs."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return mean, mean - half, mean + half


@dataclass
class StudyResult:
    runs: pd.DataFrame  # one row per configuration and seed
    summary: pd.DataFrame  # one row per configuration: mean, CI low/high per metric
    report_path: Path
    parent_run_id: str | None


def run_study(
    study: Study,
    out_dir: str | Path,
    *,
    tracking_uri: str | None,
    factory: ModelFactory = registry_model,
    log: Callable[[str], None] = print,
) -> StudyResult:
    """Run every configuration x seed, log to MLflow (unless `tracking_uri` is None), write the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(study.dataset)
    log(dataset.report.summary())
    setups: dict[str, Any] = {}
    configs = [(spec.name, label, params) for spec in study.models for label, params in spec.configurations()]
    for name, _, params in configs:  # fail on a bad name or parameter before any fitting
        factory(name, params, study.seeds[0])

    mlflow = parent = None
    if tracking_uri is not None:
        import mlflow

        _, experiment_id = use_tracking(tracking_uri, f"study-{study.name}")
        parent = mlflow.start_run(experiment_id=experiment_id, run_name=study.name)
        mlflow.log_params(
            {
                "dataset": study.dataset,
                "split": study.split,
                "k": study.k,
                "seeds": ",".join(map(str, study.seeds)),
                "study_sha256": study.source_sha256,
            }
        )
        mlflow.set_tag("crosscart.kind", "study")
        mlflow.log_text(study.source_text, "study.toml")
    try:
        rows = []
        for name, label, params in configs:
            seeds = study.seeds if _seed_matters(study, name, params, factory) else study.seeds[:1]
            for seed in seeds:
                split = study.split.replace("{seed}", str(seed))
                if split not in setups:
                    setups[split] = prepare(dataset, split)
                row = evaluate_model(factory(name, params, seed), setups[split], k=study.k, name=label)
                row.update(model=label, family=name, seed=seed, split=split)
                missing = [m for m in study.metric_names if m not in row]
                if missing:
                    raise ValueError(
                        f"metrics {missing} are not computed; available: "
                        f"{sorted(k for k, v in row.items() if isinstance(v, float))}"
                    )
                rows.append(row)
                log(f"{label} seed={seed}: " + ", ".join(f"{m}={row[m]:.4f}" for m in study.metric_names))
                if mlflow is not None:
                    _log_child(mlflow, experiment_id, row, params)
        runs = pd.DataFrame(rows)
        summary = summarize(runs, study.metric_names)
        report = write_report(study, runs, summary, out_dir, parent.info.run_id if parent else None)
        if mlflow is not None:
            for _, srow in summary.iterrows():
                for metric in study.metric_names:
                    mlflow.log_metric(_key(f"{srow['model']}.{metric}"), float(srow[f"{metric}_mean"]))
            mlflow.log_artifacts(str(out_dir), "report")
    except BaseException:  # a model failing, or the command terminated: not FINISHED, as it was ended
        if mlflow is not None:
            mlflow.end_run("FAILED")
        raise
    if mlflow is not None:
        mlflow.end_run()
    return StudyResult(runs, summary, report, parent.info.run_id if parent else None)


def _key(text: str) -> str:
    """MLflow keys allow only `[\\w.\\- :/]`."""
    text = text.replace("@", "_at_")
    return "".join(c if c.isalnum() or c in "_.- :/" else "_" for c in text)


def _log_child(mlflow, experiment_id: str, row: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{row['model']} seed={row['seed']}", nested=True
    ):
        mlflow.log_params(
            {
                "model": row["family"],
                "config": row["model"],
                "seed": row["seed"],
                "split": row["split"],
                **{f"param.{k}": v for k, v in params.items()},
            }
        )
        mlflow.log_metrics(
            {
                _key(k): float(v)
                for k, v in row.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "seed" and math.isfinite(v)
            }
        )


def summarize(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per configuration: number of runs and mean / CI bounds of each metric, best first by the first."""
    out = []
    for model, group in runs.groupby("model", sort=False):
        row: dict[str, Any] = {"model": model, "runs": len(group)}
        for metric in metrics:
            row[f"{metric}_mean"], row[f"{metric}_low"], row[f"{metric}_high"] = mean_ci(group[metric])
        out.append(row)
    return pd.DataFrame(out).sort_values(f"{metrics[0]}_mean", ascending=False, ignore_index=True)


def _figure(summary: pd.DataFrame, metrics: Sequence[str]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(metrics), 0.45 * len(summary) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(summary))[::-1]
    for ax, metric in zip(axes, metrics, strict=True):
        mean = summary[f"{metric}_mean"].to_numpy()
        low, high = summary[f"{metric}_low"].to_numpy(), summary[f"{metric}_high"].to_numpy()
        err = np.nan_to_num(np.vstack([mean - low, high - mean]))
        ax.barh(y, mean, xerr=err, capsize=3, color="#4C72B0")
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, summary["model"])
    fig.suptitle("mean over seeds with 95% CI")
    return fig


def _fmt(mean: float, low: float, high: float) -> str:
    return f"{mean:.4f}" if math.isnan(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def write_report(
    study: Study, runs: pd.DataFrame, summary: pd.DataFrame, out_dir: Path, parent_run_id: str | None
) -> Path:
    """report.md with the summary table and plot, plus runs.csv, summary.csv and summary.json, each
    written whole or not at all (`commerce.files.atomic_path`)."""
    metrics = study.metric_names
    with atomic_path(out_dir / "runs.csv") as tmp:
        runs.to_csv(tmp, index=False)
    with atomic_path(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    document = {
        "study": study.name,
        "sha256": study.source_sha256,
        "mlflow_parent_run": parent_run_id,
        "summary": summary.replace({np.nan: None}).to_dict(orient="records"),
    }
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(document, indent=2))
    with atomic_path(out_dir / "metrics.png") as tmp:
        _figure(summary, metrics).savefig(tmp, dpi=110)

    lines = [f"# Study: {study.name}", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [
        f"- dataset: `{study.dataset}`",
        f"- split: `{study.split}`",
        f"- k: {study.k}",
        f"- seeds: {', '.join(map(str, study.seeds))} (a configuration no seed can change ran once)",
        f"- study file sha256: `{study.source_sha256[:16]}`",
    ]
    if parent_run_id:
        lines.append(f"- MLflow parent run: `{parent_run_id}`")
    lines += [
        "",
        "## Results (mean over seeds, 95% t interval)",
        "",
        "| model | runs | " + " | ".join(metrics) + " |",
        "|---|---:|" + "---:|" * len(metrics),
    ]
    for _, r in summary.iterrows():
        cells = [_fmt(r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"]) for m in metrics]
        lines.append(f"| {r['model']} | {r['runs']} | " + " | ".join(cells) + " |")
    if study.reference:
        lines += [
            "",
            "## Published reference figures (same protocol, other implementations)",
            "",
            "| source | " + " | ".join(metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for label, values in study.reference.items():
            cells = [f"{values[m]:.4f}" if m in values else "" for m in metrics]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![metrics](metrics.png)",
        "",
        "## Every run",
        "",
        "| model | seed | " + " | ".join(metrics) + " | fit s |",
        "|---|---:|" + "---:|" * (len(metrics) + 1),
    ]
    for _, r in runs.iterrows():
        lines.append(
            f"| {r['model']} | {r['seed']} | "
            + " | ".join(f"{r[m]:.4f}" for m in metrics)
            + f" | {r['fit_seconds']:.2f} |"
        )
    path = out_dir / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
