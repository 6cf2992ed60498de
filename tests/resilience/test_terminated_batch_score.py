"""Round 6: `crosscart batch-score` sent SIGTERM (a node drain, an operator's Ctrl-C of a pod) while it
writes its parts: the replicas' directory keeps the previous whole batch, and a rerun completes and
clears what the terminated run left; since session 19 the terminated run clears it itself as it ends.
(SIGKILL at each step of the swap: test_killed_writers.py.)

With a local Dask cluster (`--cluster local:2`, tried by hand on a loaded host, SIGTERM 45 s into the
run) the nanny and worker processes ended with the command: none left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commerce.files import previous_version
from tests.training.test_batch_scoring import _register_recommender
from training.batch_scoring import read_scores

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_terminated_batch_score_leaves_the_previous_batch_and_a_rerun_completes(tracking_uri, tmp_path):
    _register_recommender(tracking_uri)
    out = tmp_path / "batches" / "lists"
    command = [sys.executable, "-c", "from crosscart.cli import app; app()", "batch-score", "--model", "recs",
               "--tracking-uri", tracking_uri, "--n", "4", "--cluster", "", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run(command, env=env, cwd=ROOT, capture_output=True).returncode == 0
    served, before = out.resolve(), read_scores(out)

    job = subprocess.Popen([*command, "--chunk-size", "1"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while job.poll() is None and time.monotonic() < deadline:  # until the new batch has parts
        if any(any(p.glob("part-*")) for p in out.parent.glob(".new-*") if p != served):
            break
        time.sleep(0.01)
    job.send_signal(signal.SIGTERM)
    assert job.wait(60) == -signal.SIGTERM  # terminated mid-write, not finished first
    assert out.resolve() == served and read_scores(out).equals(before)  # the replicas' batch, whole
    # its clean-ups ran before it ended (session 19): no staged batch nor lock left for the rerun to find
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["lists", served.name])

    assert subprocess.run(command, env=env, cwd=ROOT, capture_output=True).returncode == 0
    kept = [previous_version(out).name, served.name]  # the replaced batch, kept until the next run
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["lists", out.resolve().name, *kept])
    assert out.resolve() != served and read_scores(out).equals(before)  # the same model's lists again
