"""The report on disk: every figure as PNG, the Markdown linking them, and the MLflow artifacts."""

from __future__ import annotations

import json

import pytest

from experiments.ab.report import write_report


def full_report() -> dict:
    est = {
        "ips": 0.12,
        "ips_ci": [0.1, 0.14],
        "snips": 0.11,
        "snips_ci": [0.1, 0.12],
        "dr": 0.115,
        "dr_ci": [0.105, 0.125],
        "dm": 0.11,
    }
    return {
        "experiment": "e",
        "status": "conclusive",
        "comparisons": [
            {
                "treatment": "t",
                "metric": "ctr",
                "control_value": 0.1,
                "treatment_value": 0.11,
                "abs_lift": 0.01,
                "abs_ci": [0.0, 0.02],
                "p_adjusted": 0.04,
                "verdict": "significant increase",
            }
        ],
        "sequential": {
            "method": "group-sequential",
            "metric": "ctr",
            "comparisons": [
                {
                    "treatment": "t",
                    "verdict": "continue",
                    "looks": [
                        {"z": 1.0, "bound": 4.0, "estimate": 0.01},
                        {"z": 2.0, "bound": 2.5, "estimate": 0.01},
                    ],
                }
            ],
        },
        "interleaving": {
            "teams": {"A": "a", "B": "b"},
            "delta": 0.1,
            "ci": [0.02, 0.18],
            "wins_a": 30,
            "wins_b": 15,
            "ties": 5,
            "p_value": 0.03,
            "winner": "a",
        },
        "offpolicy": {
            "candidate": "cand",
            "logged": {"ctr": 0.1, "purchase_rate": 0.02},
            "ctr": est,
            "purchase_rate": est,
            "offline_metrics": {"ndcg@10": 0.3},
        },
        "segments": {
            "correction": "holm",
            "tests": 1,
            "cells": [
                {
                    "segment": "s",
                    "level": "x",
                    "metric": "ctr",
                    "units": [50, 50],
                    "tested": True,
                    "abs_lift": 0.01,
                    "abs_ci": [-0.01, 0.03],
                    "p_adjusted": 0.3,
                    "significant": False,
                }
            ],
        },
    }


def test_report_files(tmp_path):
    path = write_report(full_report(), tmp_path / "out")
    md = path.read_text()
    for name in ("sequential", "segments", "interleaving", "offpolicy"):
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"![{name}]({name}.png)" in md
    assert "Inference in force: group-sequential" in md and "ndcg@10 0.3000" in md
    assert json.loads((tmp_path / "out" / "report.json").read_text())["interleaving"]["winner"] == "a"


@pytest.mark.slow
def test_report_logged_to_mlflow(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from training.tracking import log_directory

    report = full_report()
    write_report(report, tmp_path / "out")
    log_directory(uri, "crosscart-experiments", f"analysis:{report['experiment']}", tmp_path / "out")
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("crosscart-experiments").experiment_id])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.md", "sequential.png"}
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the database, not ./mlruns
