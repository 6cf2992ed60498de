"""The registry as people see it: each registered model's versions with their aliases, offline metrics
and plots, and moving an alias (promote a version, or roll back to an older one).

Moving `champion` is all a promotion is: serving polls the alias and hot-swaps (serving/model_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PLOT_SUFFIXES = (".png", ".svg")


@dataclass(frozen=True)
class VersionView:
    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    created_ms: int
    model: str  # the estimator family, from the crosscart.model tag when present
    metrics: dict[str, float] = field(default_factory=dict)
    plots: tuple[str, ...] = ()


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def model_versions(tracking_uri: str, name: str) -> list[VersionView]:
    """Versions of `name`, newest first; empty when no such model is registered."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for v in client.search_model_versions(f"name='{name}'"):
        metrics, plots = {}, ()
        if v.run_id:
            try:
                metrics = dict(client.get_run(v.run_id).data.metrics)
                plots = tuple(
                    a.path for a in client.list_artifacts(v.run_id, "plots") if a.path.endswith(PLOT_SUFFIXES)
                )
            except MlflowException:  # the run was deleted: show the version without its figures
                pass
        out.append(
            VersionView(
                name=name,
                version=str(v.version),
                run_id=v.run_id,
                aliases=tuple(sorted(by_version.get(str(v.version), []))),
                created_ms=int(v.creation_timestamp or 0),
                model=(v.tags or {}).get("crosscart.model", ""),
                metrics=metrics,
                plots=plots,
            )
        )
    return sorted(out, key=lambda v: -int(v.version))


def set_alias(tracking_uri: str, name: str, version: str, alias: str = "champion") -> None:
    """Point `alias` at `version` (promotion, or rollback to an older version). ValueError if unknown."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version}") from exc
    client.set_registered_model_alias(name, alias, version)


def plot_bytes(tracking_uri: str, run_id: str, path: str, dst: str | Path) -> bytes:
    """One plot of a run (only files under `plots/`), downloaded into `dst`."""
    import mlflow

    if not path.startswith("plots/") or ".." in Path(path).parts or not path.endswith(PLOT_SUFFIXES):
        raise ValueError(f"not a plot: {path!r}")
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=tracking_uri
    )
    return Path(local).read_bytes()
