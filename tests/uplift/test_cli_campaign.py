"""`crosscart campaign` end to end on a migrated SQLite database, and `crosscart train uplift`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from commerce.db import make_engine, make_session_factory, transaction
from commerce.services.coupons import CouponInput, create_coupon
from commerce.services.shoppers import create_shopper
from crosscart.cli import app
from crosscart.settings import get_settings
from tests.conftest import fresh_mlflow_db


@pytest.fixture
def db_env(tmp_path, monkeypatch, migrated_sqlite):
    shutil.copy(migrated_sqlite, tmp_path / "crosscart.db")  # migrated: the CLI needs the campaigns tables
    url = f"sqlite:///{tmp_path / 'crosscart.db'}"
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def invoke(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_campaign_commands_end_to_end(db_env, tmp_path):
    campaign_id = invoke(
        "campaign", "create", "--name", "Spring", "--channel", "social", "--budget", "40",
        "--starts", "2026-06-01T00:00:00", "--ends", "2026-06-08T00:00:00", "--control-share", "0.25",
    )  # fmt: skip
    engine = make_engine(db_env)
    with transaction(make_session_factory(engine)) as s:
        for i in range(40):
            create_shopper(s, f"S{i:02d}", "Beijing")
        create_coupon(
            s,
            CouponInput(
                kind="amount_off",
                value="20",
                min_spend="0",
                campaign_id=campaign_id,
                coupon_id="K20",
                requires_grant=True,
            ),
        )
    engine.dispose()
    rng = np.random.default_rng(0)
    p0 = rng.uniform(0.05, 0.2, 40)
    lift = np.where(np.arange(40) < 10, 0.3, 0.0)  # only S00..S09 are persuadable
    cand = pd.DataFrame(
        {
            "shopper_id": [f"S{i:02d}" for i in range(40)],
            "coupon_id": "K20",
            "p_control": p0,
            "p_treated": p0 + lift,
            "spend_control": p0 * 300,
            "spend_treated": (p0 + lift) * 300,
        }
    )
    cand_path = tmp_path / "candidates.csv"
    cand.to_csv(cand_path, index=False)
    summary = json.loads(invoke("campaign", "plan", campaign_id, "--candidates", str(cand_path), "--json"))
    assert summary["audience"] == summary["treated"] + summary["holdout"] >= 2
    assert summary["expected_cost"] <= 40 * 1.25
    assert summary["expected_incremental_profit"] > 0
    assert invoke("campaign", "schedule", campaign_id) == "scheduled"
    assert invoke("campaign", "launch", campaign_id) == "running"  # named as in the API
    out = tmp_path / "audience.csv"
    invoke("campaign", "export", campaign_id, "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert {r["shopper_id"] for r in rows} <= {f"S{i:02d}" for i in range(10)}  # persuadable only
    assert all(r["channel"] == "social" and r["grant_id"] for r in rows if r["arm"] == "K20")
    # measuring before completion is refused with a clear message
    early = CliRunner().invoke(app, ["campaign", "report", campaign_id])
    assert early.exit_code == 2 and "once completed" in early.output
    assert invoke("campaign", "complete", campaign_id) == "completed"
    from commerce.services.audit import list_entries

    engine = make_engine(db_env)
    with transaction(make_session_factory(engine)) as s:
        entries = list_entries(s, target_id=campaign_id).items
        trail = [(e.action, e.actor_role, json.loads(e.detail)) for e in reversed(entries)]
    engine.dispose()
    # every move of the CLI is audited as the operator's, as the API audits the key's
    assert [a for a, *_ in trail] == [
        f"campaign.{a}" for a in ("created", "planned", "scheduled", "launched", "completed")
    ]
    assert {role for _, role, _ in trail} == {"operator"} and all(d["via"] == "cli" for *_, d in trail)
    assert trail[1][2]["source"] == "candidates" and trail[1][2]["audience_size"] == summary["audience"]
    report = json.loads(invoke("campaign", "report", campaign_id, "--json"))
    assert report["n_treated"] + report["n_holdout"] == len(rows)
    assert report["incremental_conversion_rate"] == 0.0  # nobody bought in this test window
    assert report["roi"] is None  # no coupon was redeemed: ROI undefined, strict JSON null


def test_unknown_campaign_exits_with_message(db_env):
    result = CliRunner().invoke(app, ["campaign", "schedule", "nope"])
    assert result.exit_code == 2 and "unknown campaign" in result.output


def test_train_uplift_logs_registers_and_plans_from_the_database(db_env, tmp_path, empty_mlflow_db):
    """Train on a tiny marketplace, register, then plan a stored campaign for its shoppers with the
    registered model, with a freshly fitted one, and refuse to plan without any model."""
    from features.synth import generate_marketplace

    fresh_mlflow_db(empty_mlflow_db, tmp_path / "mlflow.db")  # the data directory's (empty) registry

    market = tmp_path / "market"
    generate_marketplace(market, "tiny", seed=7)  # the demo's seed: enough past-campaign buyers per arm
    shoppers = pd.read_parquet(market / "shoppers.parquet").head(300)
    engine = make_engine(db_env)
    with transaction(make_session_factory(engine)) as s:
        for row in shoppers.itertuples():
            create_shopper(s, row.shopper_id, row.region, row.segment)
    engine.dispose()
    campaign_id = invoke(
        "campaign", "create", "--name", "Winter", "--channel", "email", "--budget", "150",
        "--starts", "2025-12-01T00:00:00", "--ends", "2025-12-08T00:00:00", "--control-share", "0.2",
    )  # fmt: skip
    engine = make_engine(db_env)
    with transaction(make_session_factory(engine)) as s:
        create_coupon(s, CouponInput(kind="amount_off", value="20", min_spend="99", campaign_id=campaign_id,
                                     requires_grant=True))  # fmt: skip
        create_coupon(s, CouponInput(kind="percent_off", value="0.1", cap="30", campaign_id=campaign_id,
                                     requires_grant=True))  # fmt: skip
    engine.dispose()

    refused = CliRunner().invoke(app, ["campaign", "plan", campaign_id])
    assert (
        refused.exit_code == 2 and "no uplift model registered as crosscart-uplift@champion" in refused.output
    )

    uri = get_settings().resolved_mlflow_uri  # where `campaign plan` looks for the registered model
    out = json.loads(invoke("train", "uplift", "--data", str(market), "--learner", "s-lr", "--json"))
    assert out["promoted"] and out["version"] == "1" and out["arms"] == "amount_off,percent_off"
    assert np.isfinite(out["qini_auc"]) and out["learner"] == "s-lr"
    from mlflow import MlflowClient

    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(out["run_id"], "plots")}
    assert artifacts == {
        "plots/uplift_qini.png",
        "plots/uplift_uplift_curve.png",
        "plots/uplift_calibration.png",
    }
    import mlflow

    from training.uplift import load_uplift_version  # how the API loads it

    served = load_uplift_version(uri, "crosscart-uplift", "1")
    first = shoppers["shopper_id"].iloc[0]
    rows = pd.DataFrame({"shopper_id": [first, first, "stranger"], "coupon_id": "CPN0101"})
    uplift = served.predict(rows)
    assert uplift.shape == (3,) and np.isfinite(uplift).all() and uplift[0] == uplift[1]
    # the same artifact as a plain MLflow pyfunc (signature, pinned requirements), as outside users load it
    pyfunc = mlflow.pyfunc.load_model("models:/crosscart-uplift/1")
    pins = Path(mlflow.pyfunc.get_model_dependencies("models:/crosscart-uplift/1")).read_text().split()
    assert {"mlflow", "lightgbm", "scikit-learn"} <= {p.split("==")[0] for p in pins if "==" in p}
    names = [c.name for c in pyfunc.metadata.get_input_schema().inputs]
    assert names[:3] == ["shopper_id", "coupon_id", "kind"]
    assert names[3:] == list(served.feature_names_in_)  # optional: each row's current features
    np.testing.assert_allclose(pyfunc.predict(rows)["uplift"].to_numpy(), uplift)
    # with features passed, both score them (a recent buyer scores differently from a newcomer)
    feats = pd.DataFrame([served.new_shopper] * 3, columns=list(served.feature_names_in_))
    feats.loc[0, ["recency_days", "never_bought", "frequency_90d"]] = [3.0, 0.0, 2.0]
    with_features = rows.join(feats)
    scored = served.predict(with_features)
    assert scored[0] != scored[1] and scored[1] == uplift[1]
    np.testing.assert_allclose(pyfunc.predict(with_features)["uplift"].to_numpy(), scored)
    known = set(shoppers["shopper_id"])
    for extra in ([], ["--data", str(market)]):  # the registered model, then a freshly fitted one
        args = ["--events", str(market / "events"), "--margin", "0.5", "--json", *extra]
        summary = json.loads(invoke("campaign", "plan", campaign_id, *args))
        assert summary["expected_cost"] <= 150 / (1 - 0.2)  # the audience, holdout included, fits
        assert summary["audience"] == summary["treated"] + summary["holdout"] > 0
        assert summary["expected_incremental_profit"] > 0
        rows = tmp_path / "audience.csv"
        invoke("campaign", "export", campaign_id, "--out", str(rows))
        members = list(csv.DictReader(rows.open()))
        assert len(members) == summary["audience"] and {m["shopper_id"] for m in members} <= known
    mixed = CliRunner().invoke(
        app, ["campaign", "plan", campaign_id, "--candidates", str(rows), "--data", str(market)]
    )
    assert mixed.exit_code == 2 and "excludes" in mixed.output


def test_plan_prints_the_forecast_beside_the_policy_value_and_warns(db_env, tmp_path):
    from tests.marketing.history import store_randomized_campaign

    engine = make_engine(db_env)
    factory = make_session_factory(engine)
    history = [f"H{i:03d}" for i in range(400)]
    store_randomized_campaign(factory, history, p_control=0.1, p_coupon=0.5, seed=5)  # +15 CNY per coupon
    campaign_id = invoke(
        "campaign", "create", "--name", "Next", "--channel", "email", "--budget", "3000",
        "--starts", "2026-06-01T00:00:00", "--ends", "2026-06-08T00:00:00", "--control-share", "0.2",
    )  # fmt: skip
    with transaction(factory) as s:
        create_coupon(s, CouponInput(kind="amount_off", value="30", min_spend="199", campaign_id=campaign_id,
                                     requires_grant=True, coupon_id="N30"))  # fmt: skip
    engine.dispose()
    path = tmp_path / "candidates.csv"
    for p_treated, spend, warned in ((0.5, 125.0, False), (1.0, 250.0, True)):
        pd.DataFrame({"shopper_id": history, "coupon_id": "N30", "p_control": 0.1, "p_treated": p_treated,
                      "spend_control": 25.0, "spend_treated": spend}).to_csv(path, index=False)  # fmt: skip
        table = invoke("campaign", "plan", campaign_id, "--candidates", str(path))
        assert "model forecast, whole plan" in table and "doubly robust (DR)" in table
        assert "inverse propensity (IPS)" in table and " used, 0 without logged probabilities" in table
        assert ("WARNING: The model forecasts" in table) is warned
        summary = json.loads(invoke("campaign", "plan", campaign_id, "--candidates", str(path), "--json"))
        value = summary["policy_value"]
        assert {"model_profit", "ips", "ips_low", "ips_high", "dr", "dr_low", "dr_high", "rows_used",
                "disagreement", "message", "reason"} <= set(value)  # fmt: skip
        assert value["disagreement"] is warned and value["rows_used"] == summary["treated"]
        assert f"{value['dr_low']:,.0f} to {value['dr_high']:,.0f}" in table


def test_campaign_commands_read_the_id_in_any_look_alike_form(db_env, tmp_path):
    """`ｓｐｒｉｎｇ－７` (full width, as a Chinese input method types it) is campaign `spring-7` for every
    command, as for `get_campaign` and the API's URLs: `plan` found the campaign, then refused to store
    its audience (unknown campaign) after all the work, `export` wrote no rows, `schedule` said unknown."""
    campaign_id, typed = "spring-7", "\uff53\uff50\uff52\uff49\uff4e\uff47\uff0d\uff17"
    invoke(
        "campaign", "create", "--id", campaign_id, "--name", "Spring", "--channel", "social", "--budget",
        "40", "--starts", "2026-06-01T00:00:00", "--ends", "2026-06-08T00:00:00", "--control-share", "0.25",
    )  # fmt: skip
    engine = make_engine(db_env)
    with transaction(make_session_factory(engine)) as s:
        for i in range(20):
            create_shopper(s, f"S{i:02d}", "Beijing")
        coupon = CouponInput(
            "amount_off", "20", campaign_id=campaign_id, coupon_id="K20", requires_grant=True
        )
        create_coupon(s, coupon)
    engine.dispose()
    cand = pd.DataFrame({"shopper_id": [f"S{i:02d}" for i in range(20)], "coupon_id": "K20"})
    cand = cand.assign(p_control=0.1, p_treated=0.4, spend_control=30.0, spend_treated=120.0)
    cand.to_csv(tmp_path / "candidates.csv", index=False)
    summary = json.loads(
        invoke("campaign", "plan", typed, "--candidates", str(tmp_path / "candidates.csv"), "--json")
    )
    assert summary["treated"] >= 1 and summary["holdout"] >= 1
    assert invoke("campaign", "schedule", typed) == "scheduled"
    assert invoke("campaign", "launch", typed) == "running"
    invoke("campaign", "export", typed, "--out", str(tmp_path / "audience.csv"))
    assert len(list(csv.DictReader((tmp_path / "audience.csv").open()))) == summary["audience"]
    assert invoke("campaign", "complete", typed) == "completed"


def test_plan_names_every_column_a_candidates_csv_lacks_in_one_line(db_env, tmp_path):
    """A CSV with other columns ended in the planner's `KeyError: 'coupon_id'` traceback."""
    campaign_id = invoke(
        "campaign", "create", "--name", "Own", "--channel", "email", "--budget", "100",
        "--starts", "2026-06-01T00:00:00", "--ends", "2026-06-08T00:00:00",
    )  # fmt: skip
    path = tmp_path / "candidates.csv"
    pd.DataFrame({"shopper_id": ["S1"], "uplift": [0.1]}).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["campaign", "plan", campaign_id, "--candidates", str(path)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "error: candidates lack columns ['coupon_id', 'p_control', 'p_treated'," in result.output
    assert (
        "they need shopper_id, coupon_id, p_control, p_treated, spend_control, spend_treated" in result.output
    )


def test_a_budget_set_while_the_cli_plans_refuses_the_plan(db_env, tmp_path, monkeypatch):
    """A budget set (the console's plan form) while `campaign plan` computes: the plan was for the old
    budget and was stored; now the command exits 2 saying to plan again, and stores no audience."""
    import marketing.planning
    from commerce.campaigns import CampaignMember
    from commerce.services.campaign_overview import set_draft_budget

    campaign_id = invoke(
        "campaign", "create", "--name", "Raced", "--channel", "email", "--budget", "500",
        "--starts", "2026-06-01T00:00:00", "--ends", "2026-06-08T00:00:00", "--control-share", "0.25",
    )  # fmt: skip
    engine = make_engine(db_env)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        for i in range(20):
            create_shopper(s, f"S{i:02d}", "Beijing")
        create_coupon(s, CouponInput(kind="amount_off", value="20", min_spend="0", campaign_id=campaign_id,
                                     coupon_id="K20", requires_grant=True))  # fmt: skip
    optimise = marketing.planning.planner.plan_campaign

    def budget_set_meanwhile(*args, **kwargs):
        with transaction(factory) as s:
            set_draft_budget(s, campaign_id, "10")
        return optimise(*args, **kwargs)

    monkeypatch.setattr(marketing.planning.planner, "plan_campaign", budget_set_meanwhile)
    path = tmp_path / "candidates.csv"
    pd.DataFrame(
        {"shopper_id": [f"S{i:02d}" for i in range(20)], "coupon_id": "K20", "p_control": 0.1,
         "p_treated": 0.4, "spend_control": 30.0, "spend_treated": 120.0}
    ).to_csv(path, index=False)  # fmt: skip
    refused = CliRunner().invoke(app, ["campaign", "plan", campaign_id, "--candidates", str(path)])
    assert refused.exit_code == 2, refused.output
    assert "changed while it was planned" in refused.output and "plan again" in refused.output
    with factory() as s:
        assert s.query(CampaignMember).count() == 0
    engine.dispose()
