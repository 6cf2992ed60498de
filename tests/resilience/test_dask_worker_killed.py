"""A Dask worker process killed in the middle of the scale-out feature job or training set (the OOM
killer, a node drained): the job completes with the same outputs when the scheduler can rerun the lost
work elsewhere, or fails with `ClusterWorkersDied` (or `ClusterJobStalled` once nothing finished for its
`stall_seconds`), and then leaves the previous outputs whole, never half rewritten."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from commerce.files import previous_version
from features.cluster import ClusterJobStalled, ClusterWorkersDied
from features.distributed import OUTPUTS, read_training_set, run_feature_job, run_training_set
from tests.features.conftest import market, read_output  # noqa: F401  (the three-part marketplace)

pytestmark = pytest.mark.slow  # two worker processes and their restarts: about a minute of CPU


class KillAtTask:
    """A worker plugin: the worker that starts a task whose key begins with `prefix` dies at once
    (`os._exit`), `times` times in all across the cluster (one marker file per death)."""

    name = "kill-at-task"

    def __init__(self, markers: Path, prefix: str, times: int):
        self.markers, self.prefix, self.times = str(markers), prefix, times

    def setup(self, worker) -> None:
        pass

    def teardown(self, worker) -> None:
        pass

    def transition(self, key, start, finish, **kwargs) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if finish != "executing" or not str(name).startswith(self.prefix):
            return
        for i in range(self.times):
            try:
                os.close(os.open(os.path.join(self.markers, f"kill-{i}"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                continue
            os._exit(1)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as c,
        Client(c) as client,
    ):
        yield c, client


def _labels(data) -> pd.DataFrame:
    ev = pd.read_parquet(data / "events")
    buys = ev[ev["event_type"] == "purchase"].tail(40)
    return buys[["shopper_id", "product_id", "ts"]].rename(columns={"ts": "label_ts"}).assign(label=1)


def _outputs(paths) -> dict[str, pd.DataFrame]:
    return {name: read_output(name, path) for name, path in paths.items()}


def _arm(client, tmp_path: Path, prefix: str, times: int) -> None:
    from distributed.diagnostics.plugin import WorkerPlugin

    plugin = type("KillAtTaskPlugin", (KillAtTask, WorkerPlugin), {})(tmp_path, prefix, times)
    client.register_plugin(plugin)


def _disarm(client) -> None:
    client.unregister_worker_plugin(KillAtTask.name)
    client.wait_for_workers(2, timeout=60)


def test_a_worker_killed_mid_job_is_replaced_and_the_outputs_are_whole(market, cluster, tmp_path):  # noqa: F811
    c, client = cluster
    expected = _outputs(run_feature_job(market, tmp_path / "in-process", partitions=4, half_life_days=30.0))
    markers = tmp_path / "markers"
    markers.mkdir()
    _arm(client, markers, "_partition_job", times=1)
    try:
        paths = run_feature_job(market, tmp_path / "out", partitions=4, half_life_days=30.0, client=client)
    finally:
        _disarm(client)
    assert (markers / "kill-0").exists()  # a worker did die in the job
    for name, frame in _outputs(paths).items():
        assert len(frame) > 0
        pd.testing.assert_frame_equal(expected[name], frame, check_exact=True)


def test_a_job_that_loses_more_workers_than_the_scheduler_retries_fails_and_keeps_the_old_outputs(
    market,  # noqa: F811
    cluster,
    tmp_path,
):
    c, client = cluster
    out = tmp_path / "out"
    before = _outputs(run_feature_job(market, out, partitions=4, half_life_days=30.0))
    markers = tmp_path / "markers"
    markers.mkdir()
    allowed, c.scheduler.allowed_failures = c.scheduler.allowed_failures, 0  # the first death fails a task
    try:
        _arm(client, markers, "_partition_job", times=1)
        with pytest.raises(ClusterWorkersDied):
            run_feature_job(market, out, partitions=4, half_life_days=7.0, client=client)
    finally:
        c.scheduler.allowed_failures = allowed
        _disarm(client)
    after = _outputs({name: out / name for name in OUTPUTS})
    for name, frame in before.items():  # were removed, then part of them rewritten with 7-day weights
        pd.testing.assert_frame_equal(frame, after[name], check_exact=True)
    # Tasks still running when the job failed may leave a hidden staged directory: never published, and
    # removed by the next write of that output once they are done
    _idle(client)
    run_feature_job(market, out, partitions=4, half_life_days=30.0)
    published = {os.readlink(out / name) for name in OUTPUTS}
    previous = {os.readlink(previous_version(out / name)) for name in OUTPUTS}  # kept for their readers
    assert {p.name for p in out.iterdir() if p.name.startswith(".new-")} == published | previous


def _idle(client) -> None:
    for _ in range(600):
        if not any(client.processing().values()):
            return
        time.sleep(0.1)


def test_a_worker_killed_at_the_training_sets_join_is_replaced_or_the_job_ends_in_bounded_time(
    market,  # noqa: F811
    cluster,
    tmp_path,
):
    """The fault that once hung past 300 s: the worker running a partition's final join dies. It lost the
    snapshots and shuffle outputs it held, so the scheduler restarts the P2P shuffles and reruns them.
    Either the set is whole and equal to the in-process one, or the job stops once nothing finished
    for `stall_seconds` and the previous set stays published; never a wait without end."""
    c, client = cluster
    labels, out = _labels(market), tmp_path / "ts"
    expected = read_training_set(run_training_set(market, labels, tmp_path / "in-process", partitions=3))
    before = pd.read_parquet(run_training_set(market, labels.head(10), out, partitions=3))
    markers = tmp_path / "markers"
    markers.mkdir()
    _arm(client, markers, "_join_partition", times=1)
    started = time.monotonic()
    try:
        run_training_set(market, labels, out, client=client, partitions=3, stall_seconds=60)
    except ClusterJobStalled:
        pd.testing.assert_frame_equal(before, pd.read_parquet(out), check_exact=True)
    else:
        pd.testing.assert_frame_equal(expected, read_training_set(out), check_exact=True)
    finally:
        elapsed = time.monotonic() - started
        _disarm(client)
    assert (markers / "kill-0").exists()  # a worker did die in the job
    assert elapsed < 240  # 40-60 s here on a loaded host


def test_a_training_set_that_loses_more_workers_than_the_scheduler_retries_keeps_the_previous_one(
    market,  # noqa: F811
    cluster,
    tmp_path,
):
    c, client = cluster
    labels, out = _labels(market), tmp_path / "ts"
    before = pd.read_parquet(run_training_set(market, labels, out, partitions=3))
    markers = tmp_path / "markers"
    markers.mkdir()
    allowed, c.scheduler.allowed_failures = c.scheduler.allowed_failures, 0
    try:
        _arm(client, markers, "_join_partition", times=1)
        with pytest.raises((ClusterWorkersDied, ClusterJobStalled)):
            run_training_set(market, labels.head(10), out, client=client, partitions=3, stall_seconds=60)
    finally:
        c.scheduler.allowed_failures = allowed
        _disarm(client)
    pd.testing.assert_frame_equal(before, pd.read_parquet(out), check_exact=True)
