"""The model registry as training and serving use it: aliases, not stages (MLflow 3).

Serving needs two calls and one exception:

- `champion_version(client, name, alias)` -> the `ModelVersion` the alias points at, or None when the model
  or the alias does not exist yet.
- `load_recommender_version(tracking_uri, name, version)` -> the `Recommender`, loaded with
  `models.recommenders.load_recommender` from the version's `recommender` artifact
  (`load_artifact` does this for any artifact key; the uplift model uses it too).
- Anything that stops a model from being served (registry unreachable, missing model or version, corrupt
  or unreadable artifact) raises `ModelUnavailable`, so serving can fall back to popularity with one
  `except`.

Training (any model kind: recommenders, uplift) registers through one generic helper:

    register_and_maybe_promote(run_id, artifact_name, model_name, metric, value, higher_is_better=True)

It registers the model the run logged under `artifact_name` as a new version of `model_name`,
records the metric on the version as tags (`crosscart.metric`, `crosscart.metric_value`,
`crosscart.higher_is_better`), and moves the alias (default `champion`) only when the new value strictly
beats the current champion's value of the SAME metric (a tie keeps the champion). The champion's value
comes from its tags, else from its run's metric of that name. A champion with no value for the metric
is kept (the comparison is meaningless); `force=True` promotes anyway. Two trainings promoting at the
very same moment may race: the last alias write wins.

This module imports MLflow only inside its functions, so importing it costs nothing.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from commerce.files import publishing_turn
from training.tracking import metric_key

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from models.recommenders.base import Recommender

T = TypeVar("T")
ARTIFACT_KEY = "recommender"  # the pyfunc artifact holding the saved recommender
UPLIFT_KEY = "uplift"  # the pyfunc artifact holding the saved ServedCouponUplift
METRIC_TAG = "crosscart.metric"
VALUE_TAG = "crosscart.metric_value"
DIRECTION_TAG = "crosscart.higher_is_better"
# The registry answers "not found" with one of these codes for a missing model, version or alias.
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class ModelUnavailable(RuntimeError):
    """No servable model: the registry, the version or its artifact is missing, unreachable or corrupt."""


class RegistryNotRead(ModelUnavailable):
    """The registry could not be read while loading a version it names (locked past SQLite's busy
    timeout, unreachable, not answering): the version may be whole, so a reader tries it again at its
    next poll rather than setting it aside as broken until the alias moves."""


class RegistryUnreadable(ModelUnavailable):
    """The registry's SQLite database file is missing, empty or not a database. `problem` says which
    without the path, `kind` in one word (`missing`, `unreadable` or `corrupt`, what /ready says); the
    message adds the path (logs, `crosscart doctor`)."""

    def __init__(self, problem: str, path: Path, kind: str = "corrupt") -> None:
        super().__init__(f"{problem}: {path}")
        self.problem, self.kind = problem, kind


SQLITE_HEADER = b"SQLite format 3\x00"


def sqlite_registry_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for any other store (a server, in memory)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client of an existing registry, for its readers (serving, `crosscart doctor`, batch scoring).

    MLflow creates a SQLite registry whose file is missing, and fills an empty one: a lost, mistyped or
    emptied `mlflow.db` became a fresh empty registry (dozens of migrations of CPU), read as "no model
    registered", and `crosscart doctor` created it while checking. A file that is not SQLite failed later
    with a bare `DatabaseError`. Raises RegistryUnreadable instead, on every call (a stat and 16 bytes),
    so a file removed or overwritten under a running reader is noticed at its next poll."""
    from mlflow import MlflowClient

    path = sqlite_registry_path(tracking_uri)
    if path is not None:
        try:
            with path.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            raise RegistryUnreadable("the registry database file is missing", path, "missing") from None
        except OSError as exc:
            problem = f"the registry database file cannot be read ({exc.strerror})"
            raise RegistryUnreadable(problem, path, "unreadable") from exc
        if not header:
            raise RegistryUnreadable("the registry database file is empty", path)
        if header != SQLITE_HEADER:
            raise RegistryUnreadable("the registry database file is not a SQLite database (corrupt?)", path)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@dataclass(frozen=True)
class Promotion:
    """What `register_and_maybe_promote` did, and why."""

    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    metric: str
    value: float
    champion_version: str | None = None  # the alias holder before this call
    champion_value: float | None = None


def champion_version(client: MlflowClient, name: str, alias: str = "champion") -> ModelVersion | None:
    """The version `alias` points at; None when the model or alias does not exist.

    Raises ModelUnavailable when the registry itself cannot be read.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise ModelUnavailable(f"registry lookup of {name}@{alias} failed: {exc}") from exc
    except Exception as exc:  # driver/network errors arrive as many types; serving needs one
        raise ModelUnavailable(f"registry lookup of {name}@{alias} failed: {exc}") from exc


def recorded_value(client: MlflowClient, version: ModelVersion, metric: str) -> float | None:
    """The version's value of `metric`: its tags when they name this metric, else its run's metric."""
    tags = version.tags or {}
    if tags.get(METRIC_TAG) == metric and VALUE_TAG in tags:
        return float(tags[VALUE_TAG])
    if not version.run_id:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(version.run_id).data.metrics.get(metric_key(metric))
    except MlflowException:  # the run was deleted: nothing to compare with
        return None


def is_better(new: float, old: float, higher_is_better: bool = True) -> bool:
    """Strict improvement: a tie keeps the incumbent."""
    return new > old if higher_is_better else new < old


def register_and_maybe_promote(
    run_id: str,
    artifact_name: str,
    model_name: str,
    metric: str,
    value: float,
    higher_is_better: bool = True,
    *,
    alias: str = "champion",
    tracking_uri: str | None = None,
    tags: dict[str, Any] | None = None,
    force: bool = False,
) -> Promotion:
    """Register the run's logged model as a new version; move `alias` to it only if it beats the champion.

    `tracking_uri` None means MLflow's current one (`training.tracking.use_tracking` sets it).
    """
    import mlflow
    from mlflow import MlflowClient

    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{metric} = {value} cannot rank models; refusing to register")
    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    version_tags = {
        **(tags or {}),
        METRIC_TAG: metric,
        VALUE_TAG: repr(value),
        DIRECTION_TAG: str(higher_is_better).lower(),
    }
    version = mlflow.register_model(
        _logged_model_uri(client, run_id, artifact_name), model_name, tags=version_tags
    )
    # The champion as it is now, not before registering (seconds of copying artifacts): another trainer
    # may have promoted a better model meanwhile, which a stale comparison let this one replace.
    with _promotion_turn(tracking_uri or mlflow.get_tracking_uri()):
        champion = champion_version(client, model_name, alias)
        champion_value = recorded_value(client, champion, metric) if champion is not None else None
        if champion is None:
            promoted, reason = True, "no champion yet"
        elif force:
            promoted, reason = True, "forced"
        elif champion_value is None:
            kept = f"champion v{champion.version} has no recorded {metric}; kept (use force)"
            promoted, reason = False, kept
        elif is_better(value, champion_value, higher_is_better):
            promoted, reason = True, f"{metric} {value:.6g} beats champion's {champion_value:.6g}"
        else:
            promoted, reason = False, f"{metric} {value:.6g} does not beat champion's {champion_value:.6g}"
        if promoted:
            client.set_registered_model_alias(model_name, alias, version.version)
    return Promotion(
        model_name=model_name,
        version=str(version.version),
        alias=alias,
        promoted=promoted,
        reason=reason,
        metric=metric,
        value=value,
        champion_version=None if champion is None else str(champion.version),
        champion_value=champion_value,
    )


@contextmanager
def _promotion_turn(tracking_uri: str) -> Iterator[None]:
    """Hold the turn to compare with the champion and move its alias: MLflow has no compare-and-set, so
    two trainers each reading the champion before the other's move let the worse one win. On a SQLite
    store the trainers take turns (`commerce.files.publishing_turn` on the file: a lock beside it); a
    tracking server offers no lock, and the read stays milliseconds from the move."""
    if tracking_uri.startswith("sqlite:///"):
        with publishing_turn(Path(tracking_uri.removeprefix("sqlite:///"))):
            yield
    else:
        yield


def _logged_model_uri(client: MlflowClient, run_id: str, artifact_name: str) -> str:
    """MLflow 3 stores logged models apart from run artifacts: find the run's model of that name."""
    experiment_id = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models(
        [experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{artifact_name}'",
        max_results=1,
    )
    if not found:
        raise ValueError(f"run {run_id} logged no model named {artifact_name!r}")
    return found[0].model_uri


def load_recommender_version(
    tracking_uri: str,
    name: str,
    version: str | int,
    dst_dir: str | Path | None = None,
    load: Callable[[Path], Any] | None = None,
) -> Recommender:
    """Download version `version` of `name` and load its recommender artifact (see `load_artifact`) with
    `load`, by default `models.recommenders.load_recommender`; session models pass
    `models.sessions.load_session_model`."""
    from models.recommenders import load_recommender

    return load_artifact(tracking_uri, name, version, ARTIFACT_KEY, load or load_recommender, dst_dir)


def load_artifact(
    tracking_uri: str,
    name: str,
    version: str | int,
    key: str,
    load: Callable[[Path], T],
    dst_dir: str | Path | None = None,
) -> T:
    """Download version `version` of `name` and `load` the file its pyfunc logged as artifact `key`:
    how serving reads every registered model, without the pyfunc wrapper.

    Files go to `dst_dir` when given (kept), else to a temporary directory removed after loading.
    Every failure (unknown model/version, unreachable registry, missing or corrupt artifact) raises
    ModelUnavailable: loaders of pickled/npz files fail with too many exception types to list.
    """
    try:
        if dst_dir is not None:
            Path(dst_dir).mkdir(parents=True, exist_ok=True)
            return _download_and_load(tracking_uri, name, str(version), key, load, Path(dst_dir))
        with tempfile.TemporaryDirectory(prefix="crosscart-model-") as tmp:
            return _download_and_load(tracking_uri, name, str(version), key, load, Path(tmp))
    except ModelUnavailable:
        raise
    except Exception as exc:
        raise ModelUnavailable(f"cannot load {name} version {version}: {type(exc).__name__}: {exc}") from exc


def artifact_problem(tracking_uri: str, name: str, version: str | int, key: str = ARTIFACT_KEY) -> str | None:
    """Why version `version` of `name` could not be loaded for want of its `key` artifact file (the
    files removed from the artifact store, a version logged half-way), or None when the file is there.
    Reads the version's small MLmodel file and lists the artifact's folder: no model is downloaded, so
    `crosscart doctor` can ask it of the champion (which said "ok" while serving fell back)."""
    import mlflow
    from mlflow.models import Model

    try:
        source = registry_client(tracking_uri).get_model_version_download_uri(name, str(version))
        with tempfile.TemporaryDirectory(prefix="crosscart-doctor-") as tmp:
            try:
                mlmodel = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{source}/MLmodel", dst_path=tmp, tracking_uri=tracking_uri
                )
            except Exception as exc:
                return f"its MLmodel file cannot be read ({type(exc).__name__}) under {source}"
            flavor = Model.load(mlmodel).flavors.get("python_function", {})
        entry = (flavor.get("artifacts") or {}).get(key)
        if not entry:
            return f"it has no {key!r} artifact"
        folder, _, file = entry["path"].rpartition("/")
        listed = mlflow.artifacts.list_artifacts(
            artifact_uri=f"{source}/{folder}" if folder else source, tracking_uri=tracking_uri
        )
        if not any(info.path.rpartition("/")[2] == file and (info.file_size or 0) > 0 for info in listed):
            return f"its artifact file {entry['path']} is missing or empty under {source}"
    except Exception as exc:  # the registry or the artifact store could not be read
        return f"its artifacts cannot be listed: {type(exc).__name__}: {exc}"
    return None


def _http_failed(error: BaseException) -> bool:
    """An HTTP call to the tracking server or artifact store failed (refused, reset, timed out, 5xx after
    MLflow's retries): MLflow raises its own exception while handling the `requests` one. A 4xx is the
    server's answer (a file missing from the artifact store: the version stays broken), not a failure."""
    import requests

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, requests.ConnectionError | requests.Timeout | requests.exceptions.RetryError):
            return True
        if isinstance(seen, requests.HTTPError):
            return seen.response is not None and seen.response.status_code >= 500
        seen = seen.__cause__ or seen.__context__
    return False


def _download_and_load(
    tracking_uri: str, name: str, version: str, key: str, load: Callable[[Path], T], dst: Path
) -> T:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    # resolve the version through a client bound to this registry: a `models:/` URI would be resolved
    # against the process-wide registry URI, which a serving process never sets
    client = registry_client(tracking_uri)
    try:
        source = client.get_model_version_download_uri(name, version)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise
        raise RegistryNotRead(f"registry lookup of {name} version {version} failed: {exc}") from exc
    except Exception as exc:  # driver/network errors arrive as many types, as in `champion_version`
        raise RegistryNotRead(f"registry lookup of {name} version {version} failed: {exc}") from exc
    try:
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except Exception as exc:
        if not _http_failed(exc):  # a file missing from the artifact store stays a broken version
            raise
        raise RegistryNotRead(f"downloading {name} version {version} failed: {exc}") from exc
    local = Path(downloaded)
    flavor = Model.load(local).flavors.get("python_function", {})
    entry = (flavor.get("artifacts") or {}).get(key)
    if not entry:
        raise ModelUnavailable(f"{name} version {version} has no {key!r} artifact")
    path = local / entry["path"]
    if not path.exists():
        raise ModelUnavailable(f"{name} version {version}: artifact file {entry['path']} is missing")
    return load(path)
