"""`crosscart features job`, `features build` and `crosscart train` stopped part-way: SIGTERM (a node
drain, `docker stop`, an operator's `kill`) or SIGKILL (the OOM killer). Readers must still find the
previous outputs whole (and consistent with each other), nothing the stopped run wrote may stay behind
for good, the rerun must succeed without a hand clean-up, and a run SIGTERM lets end must not stay
RUNNING in MLflow.

The signal comes at a chosen step: the command runs in a subprocess in which that step's function first
sends the process the signal (as test_killed_training.py does with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.distributed import OUTPUTS
from features.synth import generate_marketplace
from tests.features.conftest import read_output
from tests.training.conftest import planted_events
from training.registry import registry_client

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("shopper_features", "product_features")
SIGNALLED_AT = """
import os, signal, sys

signum, step = getattr(signal, sys.argv[1]), sys.argv[2]
if step == "partition":  # the feature job: the events spilled by shopper, the staged outputs open
    import features.distributed as module
    name = "_partition_job"
elif step == "second-table":  # `features build`: the first table written, the second being written
    import pandas as module
    module, name = module.DataFrame, "to_parquet"
else:  # training: the run started, nothing logged
    import training.pipelines as module
    name = "_score"
real, calls = getattr(module, name), []

def signalled(*args, **kwargs):
    calls.append(1)
    if step != "second-table" or len(calls) == 2:
        os.kill(os.getpid(), signum)
    return real(*args, **kwargs)

setattr(module, name, signalled)
sys.argv = ["crosscart", *sys.argv[3:]]
from crosscart.cli import app
app()
"""


def _crosscart(*args: str, signalled: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = SIGNALLED_AT if signalled else "from crosscart.cli import app; app()"
    command = [sys.executable, "-c", script, *(signalled or ()), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tiny_market(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "market"
    generate_marketplace(out, "tiny", seed=3)
    return out.resolve()


def _unlinked(out: Path) -> list[str]:
    """What is beside the outputs besides the outputs and the versions they (and `.previous.*`) link to."""
    linked = {os.readlink(p) for p in out.iterdir() if p.is_symlink()}
    return sorted(p.name for p in out.iterdir() if not p.is_symlink() and p.name not in linked)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGKILL"])
def test_a_feature_job_stopped_part_way_keeps_the_outputs_and_leaves_nothing_for_good(
    tiny_market, tmp_path, signame
):
    out = tmp_path / "features"
    args = ("features", "job", "--data", str(tiny_market), "--out", str(out))
    assert _crosscart(*args).returncode == 0
    before = {name: read_output(name, out / name) for name in OUTPUTS}

    stopped = _crosscart(*args, signalled=(signame, "partition"))

    assert stopped.returncode == -getattr(signal, signame), stopped.stderr
    for name in OUTPUTS:  # the readers' outputs: the previous ones, whole
        assert read_output(name, out / name).equals(before[name]), name
    if signame == "SIGTERM":  # the command cleaned up as it ended: its staged outputs and its spill
        assert _unlinked(out) == []
    assert _crosscart(*args).returncode == 0
    # what a SIGKILLed run left (its spill, a copy of the events cut by shopper, stayed for good) is gone
    assert _unlinked(out) == []
    for name in OUTPUTS:
        assert read_output(name, out / name).equals(before[name]), name


def test_a_feature_build_killed_between_its_tables_leaves_both_previous_ones(tiny_market, tmp_path):
    """The two tables are read together (one `as_of`): each was published as soon as written, so a kill
    while writing the second left the new shopper table beside the previous product one."""
    out = tmp_path / "features"
    args = ("features", "build", "--data", str(tiny_market), "--out", str(out))
    last = pd.read_parquet(tiny_market / "events", columns=["ts"])["ts"].max()
    day_before = last - pd.Timedelta(days=1)
    assert _crosscart(*args, "--as-of", str(day_before)).returncode == 0

    assert _crosscart(*args, signalled=("SIGKILL", "second-table")).returncode == -signal.SIGKILL
    assert _as_of(out) == {name: [day_before] for name in TABLES}  # both previous, not one of each

    assert _crosscart(*args).returncode == 0
    assert _as_of(out) == {name: [last + pd.Timedelta(microseconds=1)] for name in TABLES}
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.parquet" for name in sorted(TABLES)]


def _as_of(out: Path) -> dict[str, list[pd.Timestamp]]:
    return {name: pd.read_parquet(out / f"{name}.parquet")["as_of"].unique().tolist() for name in TABLES}


def test_a_training_sent_sigterm_ends_its_run(tracking_uri, tmp_path):
    events = tmp_path / "events.csv"
    planted_events().to_csv(events, index=False)
    args = ("train", "recommender", "--data", f"events:{events}", "--user-col", "shopper",
            "--item-col", "product", "--time-col", "when", "--model", "popularity",
            "--tracking-uri", tracking_uri, "--registered-name", "recs", "--force-promote")  # fmt: skip

    stopped = _crosscart(*args, signalled=("SIGTERM", "fitting"))

    assert stopped.returncode == -signal.SIGTERM, stopped.stderr
    client = registry_client(tracking_uri)
    assert client.search_model_versions("name='recs'") == []
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=10)
    # ended as the process ended (FAILED), not RUNNING until the next training of the experiment
    assert [r.info.status for r in runs] == ["FAILED"]
