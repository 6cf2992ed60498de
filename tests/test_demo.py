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
    # the data ends today, so the storefront's default ranking (best sellers of the last 7 days) is not
    # empty: the demo's sales were all dated 2025
    from commerce.db import make_engine, make_session_factory
    from serving.catalog_db import load_catalog

    engine = make_engine(f"sqlite:///{demo_env / 'crosscart.db'}")
    catalog = load_catalog(make_session_factory(engine))
    engine.dispose()
    assert len(catalog.ranking("sales", "7d", 20)) == 20 and len(catalog.ranking("popularity", "7d", 5)) == 5
    assert "days ago" not in first.output
    assert orders > 0 and events > 0
    assert weights > 10  # the generator's parcel weights were loaded
    assert (demo_env / "features-tiny" / "shopper_features.parquet").is_file()
    state = json.loads((demo_env / "demo-state.json").read_text())
    assert set(state) == {"generate", "load", "features", "uplift", "delivery", "session"}
    assert "session model crosscart-session v1 (" in first.output

    second = runner.invoke(app, ["demo", "--scale", "tiny", "--no-serve"])
    assert second.exit_code == 0, second.output
    assert "already generated" in second.output
    assert "already loaded" in second.output
    assert "already built" in second.output
    assert "recommender kept" in second.output
    assert "uplift model already trained" in second.output
    assert "delivery-time model already trained" in second.output
    assert "session model already trained" in second.output
    assert json.loads((demo_env / "demo-keys.json").read_text())["samples"] == keys["samples"]


@pytest.mark.slow
def test_session_page_out_of_the_box(demo_env):
    """The API as `make run` starts it serves the demo's registered session model for a live visit."""
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from models.sessions import SESSION_MODELS
    from serving.app import create_app
    from training.sessions import marketplace_clicks

    done = CliRunner().invoke(app, ["demo", "--scale", "tiny", "--no-serve"])
    assert done.exit_code == 0, done.output
    keys = json.loads((demo_env / "demo-keys.json").read_text())
    clicks = marketplace_clicks(demo_env / "marketplace-tiny").sort_values(["session_id", "ts"])
    moves = clicks.assign(nxt=clicks.groupby("session_id")["item_id"].shift(-1)).dropna()
    moves = moves[moves["item_id"] != moves["nxt"]]
    leads_on = moves["item_id"].value_counts().index[0]  # the product visits most often go on from
    most_viewed = clicks["item_id"].value_counts().index[0]
    headers = {"Authorization": f"Bearer {keys['keys']['storefront']['key']}"}
    pages = {}
    with TestClient(create_app(get_settings(), start_background=False)) as api:
        for product in (leads_on, most_viewed):
            visit = f"demo-visit-{product}".ljust(24, "q")
            event = {
                "event_id": f"demo-{product}", "ts": datetime.now(UTC).isoformat(), "event_type": "view",
                "shopper_id": keys["samples"]["shoppers"][0], "product_id": product, "session_id": visit,
            }  # fmt: skip
            assert api.post("/v1/events", json={"events": [event]}, headers=headers).status_code == 202
            pages[product] = api.get(f"/v1/sessions/{visit}/recommendations?n=5", headers=headers).json()
    page = pages[leads_on]
    served = page["session"]["model"]  # the model auto chose
    assert served in set(SESSION_MODELS) - {"auto"} and page["session"]["version"] == "1"
    assert page["session"]["items"] == [leads_on]
    assert page["items"][0]["reason"] == served
    # a visit whose product's category holds nothing else still gets a full page (store best sellers)
    assert len(pages[most_viewed]["items"]) == 5


def test_a_demo_whose_data_aged_past_the_rankings_window_says_how_to_refresh_it():
    from datetime import date

    from crosscart.cli.demo import stale_data_note

    end = date(2026, 11, 30)  # the data's exclusive end: its last day is the 29th
    assert stale_data_note(end, date(2026, 12, 6)) is None  # the 7-day window still holds the 29th
    note = stale_data_note(end, date(2026, 12, 7))
    assert note is not None and "7 days ago" in note and "window=30d or all" in note and "var/" in note


@pytest.mark.parametrize("command", [["demo", "--scale", "tiny"], ["serve"]])
def test_a_taken_port_stops_before_any_work(demo_env, command):
    """A second `make run` beside a running one says why at once, instead of after every step and the
    models' loading (uvicorn binds last)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(app, [*command, "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Cannot serve on 127.0.0.1:{port}" in result.output and "--port" in result.output
    assert "Traceback" not in result.output
    assert not (demo_env / "demo-state.json").exists() and not (demo_env / "crosscart.db").exists()


def test_the_step_log_is_replaced_whole(tmp_path):
    """A finished step is recorded through commerce.files.atomic_path: the log a later run reads is the
    previous or the new one, never a half-written file, and no temporary is left beside it."""
    from crosscart.demo_state import StepLog

    path = tmp_path / "demo_steps.json"
    StepLog(path).mark("load", "fp1")
    log = StepLog(path)
    log.mark("features", "fp2")
    assert StepLog(path).done == {"load": "fp1", "features": "fp2"}
    assert json.loads(path.read_text()) == log.done and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["demo", "--scale", "huge", "--no-serve"], "'huge' is not one of 'tiny', 'demo', 'large'"),
        (["demo", "--port", "99999"], "99999 is not in the range 1<=x<=65535"),
        (["serve", "--port", "99999"], "99999 is not in the range 1<=x<=65535"),
    ],
)
def test_a_bad_scale_or_port_is_one_line_before_any_work(demo_env, command, named):
    """A typo in `--scale` failed after migrating the database, with the generator's traceback; a port
    out of range failed with socket's OverflowError traceback."""
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and named in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (demo_env / "crosscart.db").exists()


def test_serve_refuses_a_database_whose_demo_load_was_stopped(demo_env):
    """A `make run` stopped while loading leaves part of the marketplace in the database: `crosscart serve`
    alone then says so in one line, and how to finish it, instead of serving it as if whole."""
    from crosscart.demo_state import STATE_FILE, StepLog
    from crosscart.settings import Settings

    demo_env.mkdir()
    log = StepLog(demo_env / STATE_FILE)
    log.load_begins(Settings().resolved_database_url)
    result = CliRunner().invoke(app, ["serve", "--host", "127.0.0.1", "--port", "65000"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Cannot serve: the demo's load")
    assert "`make run` (or `crosscart demo`) again" in lines[0] and "Traceback" not in result.output


def test_an_unfinished_demo_load_concerns_its_own_database_only(tmp_path):
    """Another database (production's, beside the demo's data directory) is never refused, and the load's
    finish forgets its note."""
    from crosscart.demo_state import STATE_FILE, StepLog, unfinished_load

    demo_db, other_db = f"sqlite:///{tmp_path / 'crosscart.db'}", "postgresql+psycopg://app@db:5432/shop"
    log = StepLog(tmp_path / STATE_FILE)
    log.load_begins(demo_db)
    assert unfinished_load(tmp_path, demo_db) is not None
    assert unfinished_load(tmp_path, other_db) is None
    assert unfinished_load(tmp_path / "never-ran-the-demo", demo_db) is None
    log.load_done("fp1", demo_db)
    assert unfinished_load(tmp_path, demo_db) is None
    assert StepLog(tmp_path / STATE_FILE).done == {"load": "fp1"}


@pytest.mark.parametrize("content", ['{"load": "fp', "[]", "\xff\xfe"])
def test_an_unreadable_step_log_names_no_database_and_stops_the_demo_in_one_line(demo_env, content):
    """A truncated or hand-edited demo-state.json made every `/ready` a 500 and `serve` a traceback, for
    any database, production's too; the demo itself now says which file and what to do."""
    from crosscart.demo_state import STATE_FILE, unfinished_load

    demo_env.mkdir()
    (demo_env / STATE_FILE).write_bytes(content.encode("latin-1"))
    assert unfinished_load(demo_env, "sqlite:///x.db") is None
    result = CliRunner().invoke(app, ["demo", "--scale", "tiny", "--no-serve"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and STATE_FILE in lines[0] and "delete it to rerun every step" in lines[0], lines
    assert not (demo_env / "crosscart.db").exists()
