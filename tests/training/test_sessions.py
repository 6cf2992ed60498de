"""Session models through MLflow: trained, registered, promoted on the held-out metric, loaded back both
as the pyfunc and as the served model."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from training.registry import load_recommender_version


def chains(n_sessions: int, start: float) -> pd.DataFrame:
    """Sessions walking a fixed chain a -> b -> c -> d (so rules and neighbours learn it), with noise."""
    rows = []
    for s in range(n_sessions):
        items = ["a", "b", "c", "d"][s % 2 :] + [f"noise{s % 7}"]
        rows += [(f"s{s}", item, start + s * 600 + i) for i, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["session_id", "item_id", "ts"])


def test_train_register_promote_and_load(tracking_uri, tmp_path):
    from models.sessions import load_session_model
    from training.sessions import train_session_model

    train, test = chains(60, 0.0), chains(10, 86_400.0 * 10)
    first = train_session_model(train, test, "sr", tracking_uri=tracking_uri, metric="hr@20")
    assert first.promotion.promoted and first.value == pytest.approx(first.figures["hr@20"])
    assert first.value > 0.5  # the chain is learnt: b follows a, c follows b ...
    worse = train_session_model(
        train, test, "pop", params={"top_n": 1}, tracking_uri=tracking_uri, metric="hr@20"
    )
    assert not worse.promotion.promoted  # one popular item cannot beat the rules

    served = load_recommender_version(
        tracking_uri, "crosscart-session", first.promotion.version, load=load_session_model
    )
    assert served.recommend(["a"], n=1)[0][0] == "b"
    pyfunc = mlflow.pyfunc.load_model(f"models:/crosscart-session/{first.promotion.version}")
    out = pyfunc.predict(
        pd.DataFrame({"session_id": ["x", "x", "y"], "item_id": ["a", "b", "b"]}), params={"n": 2}
    )
    assert list(out.columns) == ["session_id", "rank", "item_id", "score"]
    assert out[out["rank"] == 1].set_index("session_id")["item_id"].to_dict() == {"x": "c", "y": "c"}


def test_cli(tracking_uri, tmp_path):
    from crosscart.cli import app

    pd.concat([chains(40, 0.0), chains(8, 86_400.0 * 10)]).to_csv(tmp_path / "clicks.csv", index=False)
    result = CliRunner().invoke(
        app,
        [
            "train", "session", "--data", f"events:{tmp_path / 'clicks.csv'}", "--model", "vsknn",
            "--split", "last-days:2", "--session-col", "session_id", "--item-col", "item_id",
            "--time-col", "ts", "--tracking-uri", tracking_uri, "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == "vsknn" and summary["promoted"] and summary["metric"] == "mrr@20"
    assert summary["figures"]["hr@20"] > 0.5


def test_auto_registers_the_model_it_chose(tracking_uri):
    from models.sessions import SESSION_MODELS, load_session_model
    from training.sessions import train_session_model

    train, test = chains(120, 0.0), chains(10, 86_400.0 * 10)
    result = train_session_model(
        train, test, "auto", params={"max_predictions": 200}, tracking_uri=tracking_uri, metric="hr@20"
    )
    assert result.model == "auto" and result.served in set(SESSION_MODELS) - {"auto"}
    served = load_recommender_version(
        tracking_uri, "crosscart-session", result.promotion.version, load=load_session_model
    )
    assert served.name == result.served  # refitted as chosen, not tuned again on the held-out visits
    assert served.recommend(["a"], n=1)[0][0] == "b"
    run = mlflow.MlflowClient(tracking_uri).get_run(result.run_id)
    assert run.data.params["pipeline.served_model"] == result.served
