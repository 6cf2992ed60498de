"""Tracking-URI rules and metric naming (no MLflow server needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.pipelines import higher_is_better, parse_metric
from training.tracking import artifact_location, check_tracking_uri, metric_key


@pytest.mark.parametrize("uri", ["", "mlruns", "./mlruns", "file:///tmp/mlruns", "/abs/mlruns"])
def test_the_file_store_is_refused(uri):
    with pytest.raises(ValueError, match="file store"):
        check_tracking_uri(uri)


@pytest.mark.parametrize(
    "uri",
    ["sqlite:///var/mlflow.db", "postgresql+psycopg://u@h/db", "http://mlflow:5000", "https://m.example"],
)
def test_databases_and_servers_are_accepted(uri):
    assert check_tracking_uri(uri) == uri


def test_sqlite_artifacts_live_beside_the_database(tmp_path):
    location = artifact_location(f"sqlite:///{tmp_path}/mlflow.db", "my exp/1")
    assert location == (tmp_path / "mlartifacts" / "my_exp_1").as_uri()
    relative = artifact_location("sqlite:///var/mlflow.db", "e")
    assert relative == (Path("var").resolve() / "mlartifacts" / "e").as_uri()
    assert artifact_location("http://mlflow:5000", "e") is None


def test_metric_names():
    assert metric_key("ndcg@10") == "ndcg_at_10"
    assert parse_metric("ndcg@10") == ("ndcg@10", 10)
    assert parse_metric("map") == ("map", 10)
    assert parse_metric("coverage") == ("coverage", 10)
    for bad in ("ndcg@ten", "ndcg@0", "ndcg", "map@5", "ndgc@10", "bogus"):
        with pytest.raises(ValueError):
            parse_metric(bad)
    assert higher_is_better("ndcg@10") and higher_is_better("coverage")
    assert not higher_is_better("arp")


def test_runs_whose_process_is_gone_are_ended_at_the_next_start(tracking_uri, monkeypatch):
    """A training SIGKILLed mid-run left its run RUNNING for ever. Each run now carries its pid and host,
    and the next `use_tracking` of its experiment marks it KILLED, saying why; a run of a live process,
    or of another host and recent, is left running, one of another host a week old is ended."""
    import socket
    import subprocess
    import sys
    import time

    import mlflow

    from training.tracking import ENDED_TAG, HOST_TAG, PID_TAG, use_tracking

    monkeypatch.setenv("MLFLOW_RUN_CONTEXT", '{"team": "recs"}')  # restored after the test
    client, experiment_id = use_tracking(tracking_uri, "abandoned")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        tags = client.get_run(run.info.run_id).data.tags
    assert (tags[PID_TAG], tags[HOST_TAG], tags["team"]) == (str(os.getpid()), socket.gethostname(), "recs")

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    here, week = socket.gethostname(), int((time.time() - 8 * 24 * 3600) * 1000)
    runs = {
        "killed": client.create_run(
            experiment_id, tags={PID_TAG: dead.stdout.decode().strip(), HOST_TAG: here}
        ),
        "alive": client.create_run(experiment_id, tags={PID_TAG: str(os.getpid()), HOST_TAG: here}),
        "elsewhere": client.create_run(experiment_id, tags={PID_TAG: "1", HOST_TAG: "other-node"}),
        "old": client.create_run(experiment_id, start_time=week, tags={PID_TAG: "1", HOST_TAG: "other-node"}),
    }
    use_tracking(tracking_uri, "abandoned")
    after = {k: client.get_run(r.info.run_id) for k, r in runs.items()}
    assert {k: r.info.status for k, r in after.items()} == {
        "killed": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING", "old": "KILLED"
    }  # fmt: skip
    assert after["killed"].data.tags[ENDED_TAG].endswith("ended without ending its run")
    assert after["old"].data.tags[ENDED_TAG].startswith("still RUNNING 192 h after it started")
