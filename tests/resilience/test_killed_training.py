"""`crosscart train recommender` SIGKILLed mid-run (the OOM killer, a node drain): while fitting, while
logging its model to MLflow, or between registering the new version and moving the alias. The serving
alias must still point at a whole, loadable version, a version from a killed run must never hold it,
`crosscart doctor` must say what it sees, and the next run must succeed and promote.

The kill comes at a chosen step: the command runs in a subprocess in which that step's function is
replaced by one that SIGKILLs the process (as test_killed_writers.py does for the staged writes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crosscart.cli.doctor import run_checks
from crosscart.settings import Settings
from tests.training.conftest import planted_events
from training.registry import champion_version, load_recommender_version, registry_client
from training.tracking import ENDED_TAG

pytestmark = pytest.mark.slow  # six `crosscart train` processes: about 55 s of CPU

ROOT = Path(__file__).resolve().parents[2]
NAME = "killed-recs"
KILLED_AT = """
import os, signal, sys

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

step = sys.argv[1]
if step == "fitting":  # the run started, nothing logged
    import training.pipelines
    training.pipelines._score = die
elif step == "logging":  # the logged model created (pending), its files not yet copied
    from mlflow import MlflowClient
    MlflowClient.log_model_artifacts = die
elif step == "registering":  # the new version registered, the alias not yet moved
    from mlflow import MlflowClient
    MlflowClient.set_registered_model_alias = die
sys.argv = ["crosscart", *sys.argv[2:]]
from crosscart.cli import app
app()
"""


def _train(tracking_uri: str, events: Path, step: str | None) -> int:
    command = ["train", "recommender", "--data", f"events:{events}", "--user-col", "shopper",
               "--item-col", "product", "--time-col", "when", "--model", "popularity",
               "--tracking-uri", tracking_uri, "--registered-name", NAME, "--force-promote"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", KILLED_AT, step or "none", *command]
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True).returncode


def _versions(client) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'"))


def _recommender_check(tmp_path: Path, tracking_uri: str):
    settings = Settings(data_dir=tmp_path, mlflow_uri=tracking_uri, model_name=NAME)
    return next(c for c in run_checks(settings) if c.name == "recommender")


def test_training_killed_at_each_step_keeps_a_loadable_champion_and_a_rerun_promotes(tracking_uri, tmp_path):
    events = tmp_path / "events.csv"
    planted_events().to_csv(events, index=False)
    client = registry_client(tracking_uri)

    # the very first training killed between registering and promoting: no champion, and doctor says so
    assert _train(tracking_uri, events, "registering") == -signal.SIGKILL
    assert _versions(client) == ["1"]
    assert champion_version(client, NAME) is None
    check = _recommender_check(tmp_path, tracking_uri)
    assert (check.status, check.detail) == ("fail", f"no {NAME}@champion")

    assert _train(tracking_uri, events, None) == 0
    assert str(champion_version(client, NAME).version) == "2"

    for step in ("fitting", "logging", "registering"):
        assert _train(tracking_uri, events, step) == -signal.SIGKILL, step
        champion = champion_version(client, NAME)
        assert str(champion.version) == "2", step  # --force-promote would have moved it to a new version
        assert load_recommender_version(tracking_uri, NAME, champion.version).recommend(["u1"], n=3)[0]
        check = _recommender_check(tmp_path, tracking_uri)
        assert (check.status, check.detail) == ("ok", f"{NAME}@champion is version 2"), step
    # only the registering kill left a version: complete (registered after its model was logged), unserved
    assert _versions(client) == ["1", "2", "3"]

    assert _train(tracking_uri, events, None) == 0
    champion = champion_version(client, NAME)
    assert str(champion.version) == "4"
    assert load_recommender_version(tracking_uri, NAME, champion.version).recommend(["u1"], n=3)[0]
    assert _recommender_check(tmp_path, tracking_uri).status == "ok"
    # each killed run was ended by the next start (`training.tracking.end_abandoned_runs`), saying why
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    statuses = sorted(r.info.status for r in runs if r.info.status != "FINISHED")
    assert statuses == ["KILLED"] * 4
    assert all(
        "ended without ending its run" in r.data.tags[ENDED_TAG] for r in runs if r.info.status == "KILLED"
    )
