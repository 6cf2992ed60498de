"""The delivery-time model end to end: train on a generated marketplace's shipments, register it in MLflow,
load the registered pyfunc as serving does and predict calibrated quantiles."""

from __future__ import annotations

import pandas as pd
import pytest

from features.logistics import delivery_features
from features.synth.generator import generate_marketplace
from training.delivery import CALIBRATION_METRIC, load_delivery_version, read_shipments, train_delivery_model


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    manifest = generate_marketplace(out, "tiny", seed=3)
    assert manifest["counts"]["shipments.parquet"] > 1000
    return out


def test_train_register_load_and_predict(market, tracking_uri):
    result = train_delivery_model(market, tracking_uri=tracking_uri, registered_name="delivery-test")
    assert 0 <= result[CALIBRATION_METRIC] < 0.2
    assert {row["partner_id"] for row in result["calibration"]} == {
        "sf-bonded", "cainiao-bonded", "yto-bonded", "dhl-express", "cainiao-global", "ems-intl",
    }  # fmt: skip
    promotion = result["promotion"]
    assert promotion.promoted and promotion.version == "1"

    shipments, peaks = read_shipments(market)
    sample = shipments.head(50)
    model = load_delivery_version(tracking_uri, "delivery-test", "1")
    quantiles = model.predict_quantiles(delivery_features(sample, peaks))
    # the pyfunc (for users outside serving) gives the same quantiles
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model("models:/delivery-test/1")
    assert pyfunc.predict(delivery_features(sample, peaks)).equals(quantiles)
    assert list(quantiles.columns) == ["q10", "q50", "q80", "q90"] and len(quantiles) == 50
    assert (quantiles.diff(axis=1).iloc[:, 1:] >= 0).all().all()
    direct = quantiles.join(sample[["mode"]])
    assert (
        direct.groupby("mode")["q50"].median()["bonded"]
        < direct.groupby("mode")["q50"].median()["direct_mail"]
    )


def test_missing_shipments_are_a_clear_error(tmp_path, tracking_uri):
    pd.DataFrame({"season_id": []}).to_parquet(tmp_path / "seasons.parquet")
    with pytest.raises(FileNotFoundError, match="no shipments"):
        train_delivery_model(tmp_path, tracking_uri=tracking_uri)
