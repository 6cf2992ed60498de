"""A `crosscart serve --workers N` worker killed outright (the OOM killer, SIGKILL; session 20). uvicorn
starts another, but the dead worker never ran `Metrics.close`, so its live gauges stayed in the
multiprocess directory for good: `/metrics` kept its refresh timestamp as the oldest (a loop's data age
growing for ever: a false staleness alert), its failures in a row and the model version it served."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from serving.middleware import Metrics

# What a worker writes for these gauges (`serving.middleware.Metrics`, same names and modes), without
# importing the app: seconds per process on a loaded host, against a fraction of one for this.
WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    def gauge(name, labels, mode):
        return Gauge(name, name, labels, registry=registry, multiprocess_mode=mode)

    last_success, failures, version, end = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    gauge("crosscart_refresh_last_success_timestamp_seconds", ["loop"], "livemin").labels("catalog").set(
        last_success
    )
    gauge("crosscart_refresh_consecutive_failures", ["loop"], "livemax").labels("catalog").set(failures)
    info = gauge("crosscart_model_version_info", ["model", "name", "version"], "livemax")
    info.labels("recommender", "crosscart-recommender", version).set(1)
    if end == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    print("serving", flush=True)
    sys.stdin.read()  # until the test is done with it
    """
)


def _worker(directory: Path, last_success: float, failures: int, version: str, end: str):
    """A worker that wrote its gauges into `directory`: killed, or serving (until its stdin closes)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(last_success), str(failures), version, end],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if end == "killed":
        assert process.wait(30) == -9
    else:
        assert process.stdout.readline() == "serving\n"
    return process


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_killed_workers_gauges_leave_metrics_once_it_is_gone(tmp_path):
    _worker(tmp_path, last_success=1_000.0, failures=7, version="3", end="killed")
    live = _worker(tmp_path, last_success=2_000.0, failures=0, version="4", end="serving")
    try:
        samples = _samples(Metrics(str(tmp_path)).exposition().decode())  # any worker's /metrics
    finally:
        live.stdin.close()
        live.wait(30)

    age = samples[("crosscart_refresh_last_success_timestamp_seconds", (("loop", "catalog"),))]
    assert age == 2_000.0  # was 1000.0: the dead worker's, the oldest, for good
    assert samples[("crosscart_refresh_consecutive_failures", (("loop", "catalog"),))] == 0  # was 7
    served = {
        dict(labels)["version"]: value
        for (name, labels), value in samples.items()
        if name == "crosscart_model_version_info"
    }
    assert served == {"4": 1.0}  # was {"3": 1.0, "4": 1.0}: two versions served, one by nobody


def test_two_workers_forgetting_one_dead_worker_at_once_both_scrape(tmp_path, monkeypatch):
    """Two workers scraping at once both find a dead worker's live gauges: the one that removes a file
    second met FileNotFoundError (prometheus_client's `mark_process_dead` globs, then removes), and its
    scrape failed. The other worker's removal is done here between the glob and the removal."""
    from prometheus_client import multiprocess

    from serving.middleware import _forget_dead_workers

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    files = [tmp_path / f"gauge_{mode}_{dead.pid}.db" for mode in ("livemax", "livemin")]
    for path in files:
        path.write_bytes(b"")
    found = multiprocess.glob.glob

    def other_worker_first(pattern):
        matches = found(pattern)
        for match in matches:
            os.remove(match)
        return matches

    monkeypatch.setattr(multiprocess.glob, "glob", other_worker_first)
    _forget_dead_workers(str(tmp_path))
    assert not any(path.exists() for path in files)
