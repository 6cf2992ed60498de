"""The out-of-core feature job: same outputs in-process and on a Dask cluster, and the same values as
the in-memory pandas feature functions."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from features.cluster import dask_client, parse_cluster_spec
from features.distributed import _join_partition, read_interactions, run_feature_job
from features.interactions import build_interactions
from features.tables import product_features, read_marketplace, shopper_features
from tests.features.conftest import read_output

# `market`: tests/features/conftest.py


@pytest.fixture(scope="module")
def in_process(market, tmp_path_factory):
    out = tmp_path_factory.mktemp("inproc")
    return run_feature_job(market, out, partitions=4, half_life_days=30.0)


def test_local_cluster_gives_row_for_row_equal_outputs(market, in_process, tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        on_cluster = run_feature_job(market, tmp_path, partitions=4, half_life_days=30.0, client=client)
    for name, path in in_process.items():
        local, remote = read_output(name, path), read_output(name, on_cluster[name])
        assert len(local) > 0
        pd.testing.assert_frame_equal(local, remote, check_exact=True)


def test_outputs_match_the_in_memory_feature_functions(market, in_process):
    m = read_marketplace(market)
    as_of = m["events"]["ts"].max() + pd.Timedelta(microseconds=1)
    shoppers = shopper_features(
        m["events"], m["products"], as_of, shoppers=m["shoppers"], categories=m["categories"]
    )
    got = read_output("shopper_features", in_process["shopper_features"])
    assert len(got) == len(m["shoppers"])  # shoppers without events too, each exactly once
    pd.testing.assert_frame_equal(
        shoppers.astype({"top_category_id": object}).fillna(np.nan),
        got.astype({"top_category_id": object}).fillna(np.nan),
        check_dtype=False,
    )
    products = product_features(m["events"], m["products"], as_of, categories=m["categories"])
    pd.testing.assert_frame_equal(products, read_output("product_features", in_process["product_features"]))

    ev = m["events"][m["events"]["event_type"].isin(["view", "favorite", "cart", "purchase"])]
    expected = build_interactions(
        ev, user_col="shopper_id", item_col="product_id", value_col=None, half_life_days=30.0, as_of=as_of
    )
    data = read_interactions(in_process["interactions"])
    np.testing.assert_array_equal(data.user_ids, expected.user_ids)
    np.testing.assert_array_equal(data.item_ids, expected.item_ids)
    assert data.matrix.nnz == expected.matrix.nnz
    np.testing.assert_allclose(data.matrix.toarray(), expected.matrix.toarray(), rtol=1e-5)


def test_as_of_cuts_the_event_log(market, tmp_path):
    m = read_marketplace(market)
    as_of = m["events"]["ts"].quantile(0.5)
    paths = run_feature_job(market, tmp_path, as_of=as_of, partitions=2)
    pairs = pd.read_parquet(paths["interactions"])
    before = m["events"][(m["events"]["ts"] < as_of) & m["events"]["event_type"].isin(["view", "purchase"])]
    assert 0 < len(pairs) < m["events"].groupby(["shopper_id", "product_id"]).ngroups
    assert set(pairs["shopper_id"]) >= set(before["shopper_id"])
    assert (pd.read_parquet(paths["product_features"])["as_of"] == as_of).all()


def test_cluster_specs():
    assert parse_cluster_spec(None) is None and parse_cluster_spec(" ") is None
    assert parse_cluster_spec("local:2") == ("local", 2)
    assert parse_cluster_spec("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "10.0.0.5:8786"):
        with pytest.raises(ValueError, match="cluster spec"):
            parse_cluster_spec(bad)
    with dask_client(None) as client:
        assert client is None


_HOLD = threading.Event()


def _held(x):
    _HOLD.wait(60)
    return x


async def _lose_worker(address: str, dask_scheduler=None) -> None:
    await dask_scheduler.remove_worker(address, stimulus_id="test-worker-lost", close=False)


def test_a_stalled_cluster_job_names_the_worker_it_lost():
    """The scheduler losing a worker mid-job is said (logged, and named when the job then stalls)."""
    import re

    import dask
    from distributed import Client, LocalCluster

    from features.cluster import ClusterJobStalled, compute_on

    _HOLD.clear()
    with (
        LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        assert compute_on(client, [dask.delayed(sum)([1, 2])], what="a sum") == [3]
        lost = sorted(client.scheduler_info()["workers"])[1]
        timer = threading.Timer(1.0, client.run_on_scheduler, (_lose_worker, lost))
        timer.start()
        try:
            with pytest.raises(
                ClusterJobStalled, match=rf"a held task: .* since it lost worker\(s\) {re.escape(lost)}"
            ):
                compute_on(client, [dask.delayed(_held, pure=False)(1)], what="a held task", stall_seconds=6)
        finally:
            timer.join()
            _HOLD.set()


def _missing_file(x):
    raise FileNotFoundError(f"no part {x}")


def test_a_job_whose_scheduler_dies_is_one_clear_error_and_a_task_error_stays_itself():
    """The scheduler dying mid-job surfaced as distributed's OSError (`Timed out trying to connect`) or
    CommClosedError, which no command caught: a traceback. It is ClusterUnreachable now, which the
    commands print as one line; a task's own OSError (a missing input) is still that error."""
    import dask
    from distributed import Client, LocalCluster

    from features.cluster import ClusterUnreachable, compute_on

    _HOLD.clear()
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        with pytest.raises(FileNotFoundError, match="no part 7"):
            compute_on(client, [dask.delayed(_missing_file)(7)], what="a read")
        timer = threading.Timer(1.0, client.sync, (cluster.scheduler.close,))
        timer.start()
        try:
            with pytest.raises(ClusterUnreachable, match="a held task: lost the Dask scheduler mid-job"):
                compute_on(client, [dask.delayed(_held, pure=False)(1)], what="a held task", stall_seconds=60)
        finally:
            timer.join()
            _HOLD.set()


def test_cli_job_to_a_closed_scheduler_is_one_line(tmp_path, monkeypatch):
    """The client gives up on the closed port after 1 s here, not the command's 10 s (all it waited)."""
    import distributed
    from typer.testing import CliRunner

    from crosscart.cli import app
    from tests.conftest import free_port

    real_client = distributed.Client
    monkeypatch.setattr(distributed, "Client", lambda address, timeout: real_client(address, timeout="1s"))
    address = f"tcp://127.0.0.1:{free_port(range(18960, 18980))}"  # nothing listens there
    args = ["features", "job", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--cluster", address]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # a line, not a traceback
    assert (
        result.output.strip().splitlines()[-1].startswith(f"error: cannot reach the Dask scheduler {address}")
    )
    assert not (tmp_path / "out").exists()


def test_missing_events_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no events/ directory"):
        run_feature_job(tmp_path, tmp_path / "out")


def test_cli_job_runs_and_reads_the_scheduler_setting(market, in_process, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from crosscart.cli import app
    from crosscart.settings import get_settings

    runner = CliRunner()
    args = ["features", "job", "--data", str(market), "--partitions", "4", "--half-life-days", "30"]
    events = pd.read_parquet(market / "events")
    labels = events[events["event_type"] == "purchase"].tail(20)[["shopper_id", "product_id", "ts"]]
    labels.rename(columns={"ts": "label_ts"}).assign(label=1).to_parquet(tmp_path / "labels.parquet")
    extra = ["--cluster", "", "--labels", str(tmp_path / "labels.parquet"), "--stall-seconds", "30"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), *extra])
    assert result.exit_code == 0, result.output
    assert "shopper_features" in result.output and "training_set" in result.output
    assert len(pd.read_parquet(tmp_path / "a" / "training_set")) == 20
    pd.testing.assert_frame_equal(
        read_output("shopper_features", tmp_path / "a" / "shopper_features"),
        read_output("shopper_features", in_process["shopper_features"]),
    )
    monkeypatch.setenv("CROSSCART_DASK_SCHEDULER", "spark://nowhere")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cluster spec 'spark://nowhere'" in result.output


def test_cli_job_says_when_the_cluster_stalled(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import features.distributed as job
    from crosscart.cli import app
    from features.cluster import ClusterJobStalled

    def stalled(*args, stall_seconds, **kwargs):
        raise ClusterJobStalled(
            f"feature job: no task on the Dask cluster finished for {stall_seconds:.0f} s"
        )

    monkeypatch.setattr(job, "run_feature_job", stalled)
    args = ["features", "job", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--cluster", ""]
    result = CliRunner().invoke(app, [*args, "--stall-seconds", "42"])
    assert result.exit_code == 1  # a line, not a traceback
    assert result.output.strip().splitlines()[-1] == (
        "error: feature job: no task on the Dask cluster finished for 42 s"
    )


def test_training_set_equals_the_in_memory_one_in_process_and_on_a_cluster(market, tmp_path):
    from distributed import Client, LocalCluster

    from features.distributed import read_training_set, run_training_set
    from features.training_sets import training_set

    m = read_marketplace(market)
    ev = m["events"]
    buys = ev[(ev["event_type"] == "purchase") & (ev["ts"] >= ev["ts"].quantile(0.7))]
    labels = buys[["shopper_id", "product_id", "ts"]].rename(columns={"ts": "label_ts"}).assign(label=1)
    labels = labels.sample(n=min(80, len(labels)), random_state=0)
    expected = training_set(labels, ev, m["products"], shoppers=m["shoppers"], categories=m["categories"])
    here = read_training_set(run_training_set(market, labels, tmp_path / "here", partitions=3))
    assert len(here) == len(labels) and (here["features_as_of"] <= here["label_ts"]).all()
    text = [c for c in expected.columns if expected[c].dtype == object]
    pd.testing.assert_frame_equal(
        here.astype({c: object for c in text}).fillna({c: np.nan for c in text}),
        expected.fillna({c: np.nan for c in text}),
        check_dtype=False,
    )
    with (
        LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        there = run_training_set(market, labels, tmp_path / "there", partitions=3, client=client)
    pd.testing.assert_frame_equal(read_training_set(there), here, check_exact=True)


def test_campaign_training_table_streams_shopper_partitions_to_the_in_memory_rows(market):
    """Read a shopper partition at a time, the uplift training table is row for row the one built
    from the whole event log in memory (the former implementation, inlined here as the reference)."""
    from features.campaign_features import (
        EVENT_COLUMNS,
        campaign_training_table,
        encode_features,
        shopper_history_features,
    )

    assignments = pd.read_parquet(market / "assignments.parquet")
    campaigns = pd.read_parquet(market / "campaigns.parquet").set_index("campaign_id")
    shoppers = pd.read_parquet(market / "shoppers.parquet")
    events = pd.read_parquet(market / "events", columns=list(EVENT_COLUMNS))
    parts = []
    for campaign_id, rows in assignments.groupby("campaign_id", sort=True):
        members = shoppers[shoppers["shopper_id"].isin(rows["shopper_id"])]
        start, channel = campaigns.at[campaign_id, "start"], campaigns.at[campaign_id, "channel"]
        parts.append(rows.join(shopper_history_features(events, members, start, channel), on="shopper_id"))
    expected = pd.concat(parts, ignore_index=True)
    assert expected["campaign_id"].nunique() >= 2 and len(expected) > 100
    for partitions in (None, 4):
        X, labels = campaign_training_table(market, partitions=partitions)
        pd.testing.assert_frame_equal(X, encode_features(expected), check_exact=True)
        pd.testing.assert_series_equal(labels["shopper_id"], expected["shopper_id"])
        pd.testing.assert_series_equal(labels["campaign_id"], expected["campaign_id"])
        assert labels["arm"].tolist() == expected["arm"].tolist()
        assert labels["spend"].tolist() == expected["spend"].astype(float).tolist()


def test_a_training_set_that_fails_half_way_leaves_the_previous_one_whole(market, tmp_path, monkeypatch):
    import features.distributed as job

    ev = read_marketplace(market)["events"]
    buys = ev[ev["event_type"] == "purchase"].tail(40)
    labels = buys[["shopper_id", "product_id", "ts"]].rename(columns={"ts": "label_ts"}).assign(label=1)
    before = pd.read_parquet(job.run_training_set(market, labels, tmp_path / "ts", partitions=3))
    join = job._join_partition

    def fails_at_the_second(rows, product_snapshots, out, index):  # a worker lost, a full disk
        if index == 1:
            raise OSError("no space left on device")
        return join(rows, product_snapshots, out, index)

    monkeypatch.setattr(job, "_join_partition", fails_at_the_second)
    with pytest.raises(OSError):
        job.run_training_set(market, labels.head(10), tmp_path / "ts", partitions=3)
    # was: the previous set removed and the first partition of the new one in its place
    pd.testing.assert_frame_equal(before, pd.read_parquet(tmp_path / "ts"), check_exact=True)


_RELEASE_JOIN = threading.Event()


def _join_never_returning_at_the_second(rows, product_snapshots, out, index):
    """`_join_partition`, but the second partition's does not return until `_RELEASE_JOIN` (module-level:
    the cluster pickles its tasks by reference, even in-process)."""
    if index == 1:
        _RELEASE_JOIN.wait(120)
    return _join_partition(rows, product_snapshots, out, index)


def test_a_cluster_training_set_that_stops_progressing_fails_in_bounded_time_and_keeps_the_previous_one(
    market, tmp_path, monkeypatch
):
    """A join whose work never comes back (a P2P shuffle restarted while workers come and go can wait
    for ever) made the client wait with no limit: a worker killed at the join once hung the job past 300 s.
    Now the job is cancelled once no task has finished for `stall_seconds`, and publishes nothing."""
    from distributed import Client, LocalCluster

    import features.distributed as job
    from features.cluster import ClusterJobStalled

    ev = read_marketplace(market)["events"]
    buys = ev[ev["event_type"] == "purchase"].tail(40)
    labels = buys[["shopper_id", "product_id", "ts"]].rename(columns={"ts": "label_ts"}).assign(label=1)
    before = pd.read_parquet(job.run_training_set(market, labels, tmp_path / "ts", partitions=3))
    monkeypatch.setattr(job, "_join_partition", _join_never_returning_at_the_second)
    _RELEASE_JOIN.clear()
    with (
        LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        started = time.monotonic()
        try:
            with pytest.raises(ClusterJobStalled, match=r"training set: no task .* finished for \d+ s"):
                job.run_training_set(market, labels.head(10), tmp_path / "ts", client=client, stall_seconds=4)
        finally:
            _RELEASE_JOIN.set()
        assert time.monotonic() - started < 60  # the shuffles and joins, then 4 s without progress
    pd.testing.assert_frame_equal(before, pd.read_parquet(tmp_path / "ts"), check_exact=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".new-")) == [
        (tmp_path / "ts").readlink().name  # the staged set of the cancelled job removed
    ]
