"""`crosscart experiment ...` end to end through the CLI runner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crosscart.cli import app
from crosscart.settings import get_settings
from experiments.ab.simulation import SCENARIOS, simulate_events

runner = CliRunner()


@pytest.fixture
def cli_db(database_url, monkeypatch, tmp_path):
    from commerce import experiments as ex
    from commerce.audit import AuditEntry
    from commerce.db import Base, make_engine

    engine = make_engine(database_url)
    Base.metadata.create_all(engine, tables=[*ex.TABLES, AuditEntry.__table__])
    engine.dispose()
    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def invoke(*args):
    result = runner.invoke(app, ["experiment", *args])
    return result


def test_create_list_start_stop(cli_db):
    r = invoke(
        "create",
        "rec-challenger",
        "-v",
        "control=1",
        "-v",
        "challenger=1",
        "--layer",
        "home",
        "--traffic",
        "0.5",
        "--config",
        'challenger={"model_alias": "challenger"}',
        "--json",
    )
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["status"] == "draft" and created["traffic_end"] == 0.5
    assert created["variants"][1]["config"] == {"model_alias": "challenger"}
    assert invoke("start", "rec-challenger").exit_code == 0
    listed = json.loads(invoke("list", "--status", "running", "--json").output)
    assert [e["name"] for e in listed["items"]] == ["rec-challenger"] and listed["total"] == 1
    again = invoke("start", "rec-challenger")
    assert again.exit_code == 2 and "only a draft can start" in again.output
    assert invoke("stop", "rec-challenger").exit_code == 0
    assert "stopped" in invoke("list").output
    assert invoke("create", "bad", "-v", "control=1").exit_code == 2
    # the operator's create, start and stop are audited as the API's are; the refused start is not
    from commerce.db import make_engine, make_session_factory, read_only
    from commerce.services.audit import list_entries

    engine = make_engine(cli_db)
    with read_only(make_session_factory(engine)) as s:
        entries = list_entries(s, target_type="experiment").items
        trail = sorted((e.action, e.actor_role, json.loads(e.detail)["via"]) for e in entries)
        created_detail = json.loads(next(e.detail for e in entries if e.action == "experiment.created"))
    engine.dispose()
    assert trail == [(f"experiment.{a}", "operator", "cli") for a in ("created", "started", "stopped")]
    assert created_detail["layer"] == "home" and created_detail["traffic"] == [0.0, 0.5]
    assert created_detail["variants"][1]["config"] == {"model_alias": "challenger"}


def test_analyze_prints_json_with_lift_ci_and_srm(tmp_path, monkeypatch):
    events = simulate_events(SCENARIOS["recommender"], 3000, seed=1, experiment="rec")
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    r = invoke(
        "analyze",
        "--events",
        str(path),
        "--experiment",
        "rec",
        "--metrics",
        "conversion,ctr",
        "--guardrail",
        "revenue_per_shopper=decrease",
        "--planned-units",
        "100000",
        "--json",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["status"] == "not yet conclusive"
    assert report["srm"]["flagged"] is False
    rows = {x["metric"]: x for x in report["comparisons"]}
    assert set(rows) == {"conversion", "ctr", "revenue_per_shopper"}
    assert rows["ctr"]["abs_ci"][0] < rows["ctr"]["abs_lift"] < rows["ctr"]["abs_ci"][1]
    assert rows["revenue_per_shopper"]["guardrail"]
    csv = tmp_path / "events.csv"
    events.to_csv(csv, index=False)
    text = invoke("analyze", "--events", str(csv), "--experiment", "rec")
    assert text.exit_code == 0 and "SRM p=" in text.output
    missing = invoke("analyze", "--events", str(tmp_path / "nope.csv"), "--experiment", "rec")
    assert missing.exit_code == 2 and "no event file" in missing.output


def test_simulate_and_power_json():
    r = invoke("simulate", "--aa", "--runs", "20", "--units", "400", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["runs"] == 20 and 0 <= out["false_positive_rate"] <= 1
    missing = invoke("simulate", "--marketplace", "/nonexistent", "--runs", "2")
    assert missing.exit_code == 2 and "truth" in missing.output
    p = json.loads(invoke("power", "--baseline", "0.1", "--mde", "0.1", "--json").output)
    assert p["control_units"] == 14745
    assert invoke("power", "--mde", "0.1").exit_code == 2


def test_run_study_without_mlflow(tmp_path):
    from tests.ab.test_study import write_ratings

    data = write_ratings(tmp_path / "u.data")
    study = tmp_path / "s.toml"
    study.write_text(
        'name = "cli"\ndataset = "movielens:/nowhere/u.data"\n'
        'split = "stratified-item:0.75:1"\nk = 5\n[[models]]\nname = "popularity"\n'
    )
    out = str(tmp_path / "out")
    r = invoke("run", str(study), "--data", f"movielens:{data}", "--out", out, "--no-mlflow")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "report.md").is_file()
    bad = invoke("run", str(study), "--no-mlflow", "--out", str(tmp_path / "o2"))
    assert bad.exit_code == 2 and "no MovieLens ratings file" in bad.output


def test_analyze_takes_weights_and_horizon_from_the_definition(cli_db, tmp_path):
    assert (
        invoke("create", "rec", "-v", "control=1", "-v", "treatment=1", "--planned-units", "50").exit_code
        == 0
    )
    path = tmp_path / "events.parquet"
    simulate_events(SCENARIOS["recommender"], 400, seed=2, shares=(0.8, 0.2), experiment="rec").to_parquet(
        path
    )
    r = invoke("analyze", "--events", str(path), "--experiment", "rec", "--from-db", "--json")
    report = json.loads(r.output)
    assert report["planned_units_per_variant"] == 50
    assert report["srm"]["flagged"] and report["status"] == "invalid: sample ratio mismatch"
    ok = json.loads(
        invoke(
            "analyze",
            "--events",
            str(path),
            "--experiment",
            "rec",
            "--weights",
            "control=4,treatment=1",
            "--json",
        ).output
    )
    assert not ok["srm"]["flagged"]


def test_simulate_peeking_contract():
    args = ("simulate", "--aa", "--runs", "40", "--looks", "7", "--units", "1400", "--json")
    fixed = json.loads(invoke(*args, "--method", "fixed").output)
    assert fixed["method"] == "fixed" and fixed["looks"] == 7 and 0 <= fixed["false_positive_rate"] <= 1
    gs = json.loads(invoke(*args, "--method", "group-sequential", "--effect", "0.5").output)
    assert "power" in gs and len(gs["boundaries"]) == 7
    bad = invoke(*args, "--method", "bayes")
    assert bad.exit_code == 2 and "method must be one of" in bad.output


def test_analyze_sequential_and_interleaving(tmp_path):
    import pandas as pd

    events = simulate_events(SCENARIOS["recommender"], 600, seed=1, experiment="rec")
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    shown, clicks = [], []
    for u in range(40):
        unit = f"s{u}"
        for slot, (product, team) in enumerate([("p1", "champion"), ("p2", "challenger")]):
            shown.append(
                {
                    "unit_id": unit,
                    "page_id": f"pg{u}",
                    "slot": slot,
                    "product_id": product,
                    "team": team,
                    "propensity": None,
                    "ts": t0,
                }
            )
        # the challenger's product is clicked by 30 shoppers, the champion's by 5
        for product, n in (("p2", 30), ("p1", 5)):
            if u < n:
                clicks.append(
                    {
                        "experiment": "rec",
                        "variant": "x",
                        "unit_id": unit,
                        "event_type": "click",
                        "value": 0.0,
                        "ts": t0 + pd.Timedelta(minutes=1),
                        "product_id": product,
                    }
                )
    events = pd.concat([events.assign(product_id=None), pd.DataFrame(clicks)], ignore_index=True)
    events = events[~((events.event_type == "click") & events.product_id.isna())]
    events.to_parquet(tmp_path / "events.parquet")
    pd.DataFrame(shown).to_csv(tmp_path / "impressions.csv", index=False)
    args = ["analyze", "--events", str(tmp_path / "events.parquet"), "--experiment", "rec"]
    r = invoke(*args, "--method", "msprt", "--impressions", str(tmp_path / "impressions.csv"), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["sequential"]["method"] == "msprt" and report["sequential"]["comparisons"][0]["looks"]
    il = report["interleaving"]
    assert (il["wins_a"], il["wins_b"], il["ties"]) == (25, 0, 5) and il["winner"] == "challenger"
    text = invoke(*args, "--method", "fixed", "--planned-units", "100000")
    assert "fixed (conversion" in text.output and "not yet conclusive" in text.output
    bad = invoke(*args, "--method", "group-sequential")
    assert bad.exit_code == 2 and "planned units" in bad.output


def test_analyze_segments_and_report_with_figures(tmp_path):
    import numpy as np

    events = simulate_events(SCENARIOS["recommender"], 3000, seed=4, experiment="rec")
    events["new_vs_returning"] = np.where(events["pre_value"] > 0, "returning", "new")
    events.to_parquet(tmp_path / "events.parquet")
    out = tmp_path / "report"
    r = invoke(
        "analyze",
        "--events",
        str(tmp_path / "events.parquet"),
        "--experiment",
        "rec",
        "--metrics",
        "conversion",
        "--segment",
        "new_vs_returning",
        "--method",
        "msprt",
        "--report-dir",
        str(out),
        "--json",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout if hasattr(r, "stdout") else r.output)
    levels = {c["level"] for c in report["segments"]["cells"]}
    assert levels == {"new", "returning"} and report["segments"]["tests"] == 2
    assert all("p_adjusted" in c for c in report["segments"]["cells"])
    md = (out / "report.md").read_text()
    assert "![sequential](sequential.png)" in md and "## Segments" in md
    for png in ("sequential.png", "segments.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["experiment"] == "rec"


def test_analyze_offpolicy_for_a_candidate(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    from crosscart.cli import experiment as cli_experiment
    from experiments.ab import offpolicy

    rng = np.random.default_rng(0)
    units = [f"s{i}" for i in range(300)]
    events = simulate_events(SCENARIOS["recommender"], 300, seed=2, experiment="rec")
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    shown, prop, _ = offpolicy.sample_explore_pages(np.tile([0, 1], (3000, 1)), 8, 0.5, rng)
    rows, clicks = [], []
    for i in range(3000):
        unit, ts = units[i % 300], t0 + pd.Timedelta(minutes=i)
        for slot in range(2):
            product = f"p{shown[i, slot]}"
            rows.append(
                {
                    "unit_id": unit,
                    "page_id": f"pg{i}",
                    "slot": slot,
                    "product_id": product,
                    "team": None,
                    "propensity": prop[i, slot],
                    "ts": ts,
                }
            )
            if rng.random() < (0.4 if shown[i, slot] >= 4 else 0.05):
                clicks.append(
                    {
                        "experiment": "rec",
                        "variant": "control",
                        "unit_id": unit,
                        "event_type": "click",
                        "value": 0.0,
                        "ts": ts + pd.Timedelta(seconds=1),
                        "product_id": product,
                    }
                )
    log = pd.concat([events.assign(product_id=None), pd.DataFrame(clicks)], ignore_index=True)
    log = log[~((log.event_type == "click") & log.product_id.isna())]
    log.to_parquet(tmp_path / "events.parquet")
    pd.DataFrame(rows).to_parquet(tmp_path / "impressions.parquet")
    monkeypatch.setattr(
        cli_experiment,
        "_candidate_lists",
        lambda alias, shoppers: ({u: ["p4", "p5", "p6"] for u in shoppers}, {"ndcg_at_10": 0.3}),
    )
    r = invoke(
        "analyze",
        "--events",
        str(tmp_path / "events.parquet"),
        "--experiment",
        "rec",
        "--impressions",
        str(tmp_path / "impressions.parquet"),
        "--candidate",
        "challenger",
        "--json",
    )
    assert r.exit_code == 0, r.output
    op = json.loads(r.output)["offpolicy"]
    assert (
        op["candidate"] == "challenger" and op["pages"] == 3000 and op["offline_metrics"]["ndcg_at_10"] == 0.3
    )
    lo, hi = op["ctr"]["dr_ci"]
    assert lo <= 0.4 <= hi and op["logged"]["ctr"] < 0.3


def test_analyze_from_the_database(cli_db):
    from datetime import UTC, datetime, timedelta

    import commerce.all_models  # noqa: F401 (registers every table, products included)
    from commerce.db import Base, make_engine, make_session_factory, transaction
    from commerce.errors import ValidationError
    from commerce.services import experiments as ex
    from commerce.services.events import record_events

    engine = make_engine(cli_db)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    start = datetime.now(UTC)
    with transaction(factory) as s:
        ex.create_experiment(
            s, "dbexp", {"control": 1, "treatment": 1}, planned_units_per_variant=1000, inference="msprt"
        )
        with pytest.raises(ValidationError, match="inference"):
            ex.create_experiment(s, "bad", {"a": 1, "b": 1}, inference="bayes")
        with pytest.raises(ValidationError, match="planned units"):
            ex.create_experiment(s, "bad", {"a": 1, "b": 1}, inference="group-sequential")
        ex.start_experiment(s, "dbexp")
    empty = invoke("analyze", "--from-db", "--experiment", "dbexp", "--json")
    assert empty.exit_code == 2 and "'dbexp' has no exposures yet" in empty.output, empty.output
    with transaction(factory) as s:
        for i in range(60):
            ex.record_exposure(
                s, "dbexp", "treatment" if i % 2 else "control", f"u{i}", start + timedelta(seconds=1)
            )
        old = [
            {
                "event_id": "old",
                "ts": start - timedelta(days=3),
                "shopper_id": "u1",
                "product_id": "p",
                "event_type": "purchase",
                "value": 10.0,
            }
        ]
        new = [
            {
                "event_id": f"b{i}",
                "ts": start + timedelta(minutes=5),
                "shopper_id": f"u{i}",
                "product_id": "p",
                "event_type": "purchase",
                "value": 50.0,
            }
            for i in range(1, 60, 3)
        ]
        record_events(s, old + new)
    engine.dispose()
    inferred = json.loads(
        invoke("analyze", "--from-db", "--experiment", "dbexp", "--metrics", "conversion", "--json").output
    )
    assert inferred["sequential"]["method"] == "msprt"  # the experiment's own inference by default
    r = invoke(
        "analyze",
        "--from-db",
        "--experiment",
        "dbexp",
        "--method",
        "fixed",
        "--metrics",
        "conversion",
        "--segment",
        "new_vs_returning",
        "--json",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["srm"]["observed"] == {"control": 30, "treatment": 30}
    assert report["sequential"]["comparisons"][0]["verdict"].startswith("not yet conclusive")
    cells = {c["level"]: c for c in report["segments"]["cells"]}
    assert cells["returning"]["units"] == [0, 1] and not cells["returning"]["tested"]
    seg = invoke(
        "analyze",
        "--from-db",
        "--experiment",
        "dbexp",
        "--metrics",
        "conversion",
        "--segment",
        "fulfillment",
        "--segment",
        "price_level",
        "--json",
    )
    levels = {(c["segment"], c["level"]) for c in json.loads(seg.output)["segments"]["cells"]}
    assert ("fulfillment", "none") in levels and ("price_level", "none") in levels  # new shoppers
    assert ("price_level", "high") in levels  # u1's one earlier order (the only returning shopper)
    assert invoke("analyze", "--experiment", "dbexp").exit_code == 2


def test_create_refuses_malformed_page_configs(cli_db):
    bad = invoke("create", "il", "-v", "a=1", "-v", "b=1", "--config", 'b={"interleave": ["x", "x"]}')
    assert bad.exit_code == 2 and "two different model aliases" in bad.output
    ok = invoke("create", "il", "-v", "a=1", "-v", "b=1", "--config", 'b={"explore": 0.1}', "--json")
    assert ok.exit_code == 0 and json.loads(ok.output)["variants"][1]["config"] == {"explore": 0.1}
