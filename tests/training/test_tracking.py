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


def test_a_run_of_an_earlier_process_given_the_same_pid_is_ended(tracking_uri):
    """A trainer SIGKILLed in a container restarted with the same pid (PID namespaces number from 1; a
    host rebooted reuses pids too): its run's pid was alive, as the new process, so the run stayed
    RUNNING for as long as that lived. Runs carry when their process started (boot id and start ticks,
    `crosscart.process_start`), and a live pid that started at another time is another process."""
    import socket

    import mlflow

    from training.tracking import ENDED_TAG, HOST_TAG, PID_TAG, START_TAG, process_start, use_tracking

    client, experiment_id = use_tracking(tracking_uri, "reused-pid")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        started = client.get_run(run.info.run_id).data.tags[START_TAG]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert started == process_start(os.getpid()) and started.startswith(f"{boot}/")

    here, pid = socket.gethostname(), str(os.getpid())
    runs = {
        "this process": client.create_run(
            experiment_id, tags={PID_TAG: pid, HOST_TAG: here, START_TAG: started}
        ),
        "its pid before": client.create_run(
            experiment_id, tags={PID_TAG: pid, HOST_TAG: here, START_TAG: f"{boot}/1"}
        ),
        "before a reboot": client.create_run(
            experiment_id,
            tags={PID_TAG: pid, HOST_TAG: here, START_TAG: "another-boot/" + started.split("/")[1]},
        ),
        "untagged start": client.create_run(experiment_id, tags={PID_TAG: pid, HOST_TAG: here}),
    }
    use_tracking(tracking_uri, "reused-pid")
    after = {k: client.get_run(r.info.run_id) for k, r in runs.items()}
    assert {k: r.info.status for k, r in after.items()} == {
        "this process": "RUNNING", "its pid before": "KILLED", "before a reboot": "KILLED",
        "untagged start": "RUNNING",
    }  # fmt: skip
    assert (
        after["its pid before"].data.tags[ENDED_TAG]
        == f"process {pid} on {here} ended without ending its run"
    )


def test_without_proc_the_start_comes_from_psutil(monkeypatch):
    """Where there is no /proc (macOS), psutil's boot and creation times tell the process; without psutil
    either, nothing does (the pid alone is used, as before)."""
    import sys
    import types

    import training.tracking as tracking

    real = tracking.Path

    def no_proc(path, *args):
        return real("/nonexistent" + str(path)) if str(path).startswith("/proc") else real(path, *args)

    monkeypatch.setattr(tracking, "Path", no_proc)
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed
    assert tracking.process_start(os.getpid()) is None

    class Error(Exception):
        pass

    class Process:
        def __init__(self, pid):
            if pid != os.getpid():
                raise Error(pid)

        def create_time(self):
            return 1700000000.25

    fake = types.SimpleNamespace(boot_time=lambda: 1699990000.0, Process=Process, Error=Error)
    monkeypatch.setitem(sys.modules, "psutil", fake)
    assert tracking.process_start(os.getpid()) == "1699990000/1700000000.250"
    assert tracking.process_start(os.getpid() + 10**6) is None
