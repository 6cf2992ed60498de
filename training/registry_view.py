"""The registry as people see it: each registered model's versions with their aliases, offline metrics
and plots, and moving an alias (promote a version, or roll back to an older one).

Moving `champion` is all a promotion is: serving polls the alias and hot-swaps (serving/model_store.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PLOT_SUFFIXES = (".png", ".svg")


class RegistryUnavailable(Exception):
    """MLflow could not be reached, did not answer, or something else answered: not the same as "no
    such model or version"."""


def _unreachable(error: BaseException) -> bool:
    """MLflow wraps a failed HTTP call (refused, timed out, 5xx after its retries) in an MlflowException
    raised while handling the `requests` error, and so a SQLite registry's database error (a file cut
    short: "database disk image is malformed")."""
    import requests
    from sqlalchemy.exc import SQLAlchemyError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.RequestException, OSError, SQLAlchemyError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _not_mlflows_answer(error: BaseException) -> bool:
    """Something answered the registry's address, but not as MLflow does (a sign-in proxy's page, a
    gateway's 404 or 401, in HTML): MLflow's REST layer refuses such an answer with a plain
    MlflowException, where MLflow's own refusals are RestExceptions (its JSON error)."""
    from mlflow.exceptions import RestException

    if isinstance(error, RestException) or error.__traceback__ is None:
        return False
    tb = error.__traceback__
    while tb.tb_next is not None:  # the frame that raised it
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__") == "mlflow.utils.rest_utils"


def _missing(error: BaseException) -> bool:
    return getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


@contextmanager
def _reaching_registry() -> Iterator[None]:
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from training.registry import RegistryUnreadable

    try:
        yield
    except RegistryUnreadable as exc:  # a SQLite registry file missing, empty or not a database
        raise RegistryUnavailable(exc.problem) from exc
    except SQLAlchemyError as exc:  # a SQLite registry cut short: a 500, its SQL in the log, before
        raise RegistryUnavailable(f"the registry database cannot be read: {type(exc).__name__}") from exc
    except MlflowException as exc:
        if _unreachable(exc) or _not_mlflows_answer(exc):
            raise RegistryUnavailable(str(exc).splitlines()[0]) from exc
        raise


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
    from training.registry import registry_client  # never creates a missing registry file

    return registry_client(tracking_uri)


def model_versions(tracking_uri: str, name: str) -> list[VersionView]:
    """Versions of `name`, newest first; empty when no such model is registered. RegistryUnavailable
    when MLflow does not answer (an empty list then would read as "nothing registered")."""
    from mlflow.exceptions import MlflowException

    with _reaching_registry():
        client = _client(tracking_uri)
        try:
            aliases = client.get_registered_model(name).aliases or {}
        except MlflowException as exc:
            if _missing(exc):
                return []
            raise
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
                        a.path
                        for a in client.list_artifacts(v.run_id, "plots")
                        if a.path.endswith(PLOT_SUFFIXES)
                    )
                except MlflowException as exc:  # the run was deleted: show the version without its figures
                    if not _missing(exc):
                        raise
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


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version `alias` points at (None: nowhere). ValueError if there is no model `name` (as
    `set_alias`), RegistryUnavailable if MLflow does not answer."""
    from mlflow.exceptions import MlflowException

    with _reaching_registry():
        try:
            version = _client(tracking_uri).get_registered_model(name).aliases.get(alias)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            raise ValueError(f"no registered model {name!r}") from exc
    return None if version is None else str(version)


def set_alias(tracking_uri: str, name: str, version: str | None, alias: str = "champion") -> None:
    """Point `alias` at `version` (promotion, or rollback to an older version; None removes it).
    ValueError if unknown, RegistryUnavailable if MLflow does not answer."""
    from mlflow.exceptions import MlflowException

    with _reaching_registry():
        client = _client(tracking_uri)
        if version is None:
            client.delete_registered_model_alias(name, alias)
            return
        try:
            client.get_model_version(name, version)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            raise ValueError(f"{name} has no version {version}") from exc
        client.set_registered_model_alias(name, alias, version)


def plot_bytes(tracking_uri: str, run_id: str, path: str, dst: str | Path) -> bytes:
    """One plot of a run (only files under `plots/`), downloaded into `dst`."""
    import mlflow

    if not path.startswith("plots/") or ".." in Path(path).parts or not path.endswith(PLOT_SUFFIXES):
        raise ValueError(f"not a plot: {path!r}")
    with _reaching_registry():
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=tracking_uri
        )
    return Path(local).read_bytes()
