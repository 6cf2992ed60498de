"""The main job end to end on the tiny marketplace: every step runs once, a re-run skips them all."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from crosscart.cli import app
from crosscart.settings import get_settings


@pytest.fixture
def demo_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("CROSSCART_DATABASE_URL", "CROSSCART_MLFLOW_URI"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


def test_demo_sets_everything_up_once_and_skips_finished_work(demo_env):
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--scale", "tiny", "--no-serve"])
    assert first.exit_code == 0, first.output

    keys = json.loads((demo_env / "demo-keys.json").read_text())
    # stdout ends up in logs: the file's path and the sample keys, never the admin key
    assert keys["keys"]["admin"]["key"] not in first.output and "demo-keys.json" in first.output
    assert keys["keys"]["storefront"]["key"] in first.output
    roles = {entry["role"] for entry in keys["keys"].values()}
    assert {"storefront", "shopper", "merchant", "marketer", "data_scientist", "admin"} <= roles
    assert len(keys["samples"]["shoppers"]) == 2
    assert keys["samples"]["product"] and keys["samples"]["merchant"]

    engine = create_engine(f"sqlite:///{demo_env / 'crosscart.db'}")
    with engine.connect() as conn:
        orders = conn.execute(text("SELECT COUNT(*) FROM orders")).scalar_one()
        events = conn.execute(text("SELECT COUNT(*) FROM events")).scalar_one()
        weights = conn.execute(text("SELECT COUNT(DISTINCT weight_g) FROM products")).scalar_one()
    engine.dispose()
    assert orders > 0 and events > 0
    assert weights > 10  # the generator's parcel weights were loaded
    assert (demo_env / "features-tiny" / "shopper_features.parquet").is_file()
    state = json.loads((demo_env / "demo-state.json").read_text())
    assert set(state) == {"generate", "load", "features", "uplift", "delivery"}

    second = runner.invoke(app, ["demo", "--scale", "tiny", "--no-serve"])
    assert second.exit_code == 0, second.output
    assert "already generated" in second.output
    assert "already loaded" in second.output
    assert "already built" in second.output
    assert "recommender kept" in second.output
    assert "uplift model already trained" in second.output
    assert "delivery-time model already trained" in second.output
    assert json.loads((demo_env / "demo-keys.json").read_text())["samples"] == keys["samples"]
