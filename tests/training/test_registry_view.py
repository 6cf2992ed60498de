"""The registry as the console and `/v1/models` read it: versions newest first with aliases, run metrics
and plots; moving an alias (promote / roll back); plots only from under plots/."""

from __future__ import annotations

import pytest

from training.registry_view import alias_version, model_versions, plot_bytes, set_alias


def _register(tracking_uri: str, tmp_path, ndcg: float, model: str) -> str:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("registry-view")  # not whatever experiment an earlier test left active
    plot = tmp_path / f"{model}.png"
    plot.write_bytes(b"\x89PNG fake " + model.encode())
    with mlflow.start_run() as run:
        mlflow.log_metric("ndcg_at_10", ndcg)
        mlflow.log_artifact(str(plot), artifact_path="plots")
        mlflow.log_text("{}", "model/params.json")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if not client.search_registered_models(filter_string="name='rec'"):
        client.create_registered_model("rec")
    version = client.create_model_version(
        "rec", f"{run.info.artifact_uri}/model", run.info.run_id, tags={"crosscart.model": model}
    )
    return str(version.version)


def test_versions_aliases_metrics_plots_and_promotion(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_versions(tracking_uri, "rec") == []
    v1 = _register(tracking_uri, tmp_path, 0.10, "popularity")
    v2 = _register(tracking_uri, tmp_path, 0.16, "als")
    set_alias(tracking_uri, "rec", v2)
    versions = model_versions(tracking_uri, "rec")
    assert [(v.version, v.model, v.aliases) for v in versions] == [
        (v2, "als", ("champion",)),
        (v1, "popularity", ()),
    ]
    assert versions[0].metrics["ndcg_at_10"] == pytest.approx(0.16)
    assert versions[1].plots == ("plots/popularity.png",)

    set_alias(tracking_uri, "rec", v1)  # roll back
    assert [v.aliases for v in model_versions(tracking_uri, "rec")] == [(), ("champion",)]
    assert alias_version(tracking_uri, "rec", "champion") == v1
    assert alias_version(tracking_uri, "rec", "x") is None
    with pytest.raises(ValueError, match="no version 9"):
        set_alias(tracking_uri, "rec", "9")
    with pytest.raises(ValueError, match="no registered model 'nope'"):  # a 404 for the API, not a 500
        alias_version(tracking_uri, "nope", "champion")

    run_id = versions[1].run_id
    assert plot_bytes(tracking_uri, run_id, "plots/popularity.png", tmp_path / "dl").endswith(b"popularity")
    for bad in ("model/params.json", "plots/../model/params.json"):
        with pytest.raises(ValueError, match="not a plot"):
            plot_bytes(tracking_uri, run_id, bad, tmp_path / "dl2")
