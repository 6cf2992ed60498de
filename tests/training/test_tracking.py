"""Tracking-URI rules and metric naming (no MLflow server needed)."""

from __future__ import annotations

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
