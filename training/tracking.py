"""MLflow tracking setup: one place that validates the tracking URI and places artifacts.

The plain file store is deprecated in MLflow 3 and refused here: runs and the registry live in a database
(`sqlite:///...`, `postgresql://...`) or behind a tracking server (`http(s)://...`). With a SQLite
backend, artifacts go to `mlartifacts/` beside the database file, so a data directory is self-contained
(MLflow's default would be `./mlruns` under whatever directory the process happens to start in).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mlflow import MlflowClient

_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SERVER_SCHEMES = ("http", "https", "databricks")
#: Tags naming the process a run was started by (every fluent `mlflow.start_run` after `use_tracking`)
PID_TAG, HOST_TAG, ENDED_TAG = "crosscart.pid", "crosscart.host", "crosscart.ended_because"
#: When that process started (`process_start`): a pid alone is reused, by a restarted container's trainer
START_TAG = "crosscart.process_start"
#: A RUNNING run whose process cannot be checked (another host, or untagged) is abandoned after this long
ABANDONED_AFTER_SECONDS = 7 * 24 * 3600.0


def check_tracking_uri(uri: str) -> str:
    """Return `uri` when it names a database or a tracking server; raise ValueError otherwise."""
    scheme = urlparse(uri).scheme.split("+")[0] if uri else ""
    if scheme in _DATABASE_SCHEMES or scheme in _SERVER_SCHEMES:
        return uri
    raise ValueError(
        f"MLflow tracking URI {uri!r} is not supported: use a database (sqlite:///PATH/mlflow.db, "
        "postgresql://...) or a tracking server (http://HOST:5000); the file store is deprecated"
    )


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite database, else the server's default."""
    if not uri.startswith("sqlite:///"):
        return None
    db_path = Path(uri.removeprefix("sqlite:///"))
    if not db_path.is_absolute():
        db_path = db_path.resolve()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db_path.parent / "mlartifacts" / safe).as_uri()


def use_tracking(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """Point MLflow's fluent API at `uri`, create `experiment` if needed; return (client, experiment id).

    `mlflow.set_tracking_uri` is process-wide state; every pipeline calls this first, so each call site
    states the URI it means instead of inheriting one.
    """
    import mlflow
    from mlflow import MlflowClient

    check_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    context = json.loads(os.environ.get("MLFLOW_RUN_CONTEXT") or "{}")  # tags of every run started
    context.update({PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})
    if (started := process_start(os.getpid())) is not None:
        context[START_TAG] = started
    os.environ["MLFLOW_RUN_CONTEXT"] = json.dumps(context)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        end_abandoned_runs(client, found.experiment_id)
        return client, found.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return client, client.create_experiment(experiment, artifact_location(uri, experiment))
    except MlflowException:
        # Another process created it between our lookup and our insert.
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return client, found.experiment_id


def process_start(pid: int) -> str | None:
    """Which process `pid` is, told apart from a later one given the same pid: `BOOT_ID/TICKS`, the
    kernel's boot id and the process's start time in clock ticks since boot (field 22 of
    /proc/PID/stat); without /proc, psutil's boot and creation times where it is installed. None when
    the process is gone or cannot be told."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():  # a Linux /proc without this pid: gone
            return None
        return _psutil_start(pid)
    except OSError:
        return None
    # the name (field 2) is in parentheses and may hold any character: count fields after the last ")"
    return f"{boot}/{stat.rsplit(')', 1)[1].split()[22 - 3]}"


def _psutil_start(pid: int) -> str | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        return f"{psutil.boot_time():.0f}/{psutil.Process(pid).create_time():.3f}"
    except psutil.Error:
        return None


def _process_gone(pid: str, started: str | None) -> bool:
    """Whether the process that tagged a run (`pid`, and `started`, its `START_TAG` where it has one) has
    ended. A pid that is alive may be another process's: a trainer restarted in a fresh container gets
    the pid its killed predecessor had (PID namespaces number from 1), and its run was kept RUNNING for
    as long as the new process lived; the start identity tells them apart."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive as another user
        pass
    except (ValueError, OverflowError):  # not a pid we wrote
        return False
    if started is None:  # a run tagged before START_TAG: its pid is all there is
        return False
    now = process_start(int(pid))
    return now is not None and now != started


def end_abandoned_runs(
    client: MlflowClient, experiment_id: str, *, max_age: float = ABANDONED_AFTER_SECONDS
) -> list[str]:
    """Mark KILLED (tagged `crosscart.ended_because`) the runs of `experiment_id` still RUNNING whose
    process is gone: a training SIGKILLed mid-run (the OOM killer, a node drain) never ends its run,
    which stayed RUNNING for ever. Gone: its pid (`PID_TAG`) is not alive on this host, or is alive as
    another process (its start, `START_TAG`, differs), or, for a run of another host or untagged, it
    started more than `max_age` seconds ago. Returns their ids."""
    host, now = socket.gethostname(), time.time()
    ended = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags, started = run.data.tags, (run.info.start_time or 0) / 1000
        if tags.get(HOST_TAG) == host and PID_TAG in tags:
            if not _process_gone(tags[PID_TAG], tags.get(START_TAG)):
                continue
            because = f"process {tags[PID_TAG]} on {host} ended without ending its run"
        elif now - started > max_age:
            because = f"still RUNNING {(now - started) / 3600:.0f} h after it started, its process unknown"
        else:
            continue
        client.set_tag(run.info.run_id, ENDED_TAG, because)
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    return ended


def metric_key(metric: str) -> str:
    """MLflow metric keys allow only `[\\w.\\- :/]`: `ndcg@10` is logged as `ndcg_at_10`."""
    return metric.replace("@", "_at_")


def log_directory(tracking_uri: str, experiment: str, run_name: str, directory: str | Path) -> str:
    """Log every file under `directory` as the artifacts of a new run; returns the run id."""
    import mlflow

    _, experiment_id = use_tracking(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_artifacts(str(directory))
        return run.info.run_id
