"""`crosscart db`: init, current, downgrade, upgrade against the configured database."""

from __future__ import annotations

from sqlalchemy import func, select
from typer.testing import CliRunner

from commerce.db import make_engine, make_session_factory
from commerce.logistics import LogisticsPartner
from commerce.services.logistics import DEFAULT_PARTNERS
from crosscart.cli.db import app
from crosscart.settings import get_settings


def test_db_commands_use_the_configured_url(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["current"]).stdout.strip() == "base (empty)"
        for _ in range(2):  # init is safe to repeat
            result = runner.invoke(app, ["init"])
            assert result.exit_code == 0, result.output
        head = runner.invoke(app, ["current"]).stdout.strip()
        assert head not in ("", "base (empty)")
        engine = make_engine(database_url)
        with make_session_factory(engine)() as s:
            assert s.scalar(select(func.count()).select_from(LogisticsPartner)) == len(DEFAULT_PARTNERS)
        engine.dispose()
        assert runner.invoke(app, ["downgrade", "base"]).exit_code == 0
        assert runner.invoke(app, ["current"]).stdout.strip() == "base (empty)"
        assert runner.invoke(app, ["upgrade"]).exit_code == 0
        assert runner.invoke(app, ["current"]).stdout.strip() == head
        one_back = runner.invoke(app, ["downgrade", "-1"])  # as docs/commerce.md shows it
        assert one_back.exit_code == 0, one_back.output
        assert runner.invoke(app, ["current"]).stdout.strip() not in (head, "base (empty)")
        assert runner.invoke(app, ["upgrade"]).exit_code == 0
        assert runner.invoke(app, ["current"]).stdout.strip() == head
    finally:
        get_settings.cache_clear()


def test_campaign_spend_finds_and_repairs_drift(market, database_url, monkeypatch, tmp_path):
    """`crosscart db campaign-spend` compares each campaign's spent with its redemptions not released
    (exit 1 on drift); --repair sets it, and where that would pass the budget sets the budget (reported,
    exit 1): left lower, the budget would pay out again."""
    from datetime import timedelta

    from sqlalchemy import update

    from commerce.campaigns import Campaign
    from commerce.db import transaction
    from commerce.services import coupons, orders
    from commerce.services.campaigns import CampaignInput, create_campaign
    from commerce.services.checkout import CartLine, checkout
    from tests.commerce.conftest import NOW

    with transaction(market) as s:
        for cid in ("ok", "over"):
            create_campaign(
                s, CampaignInput(cid, "site", "100", NOW, NOW + timedelta(days=7), campaign_id=cid)
            )
            coupons.create_coupon(
                s,
                coupons.CouponInput("amount_off", "20", coupon_id=cid, campaign_id=cid, requires_grant=True),
            )
            coupons.grant_audience(s, cid, ["s0", "s1"], campaign_id=cid, channel="site")
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="ok", at=NOW)
        cancelled = checkout(s, "s1", [CartLine("p_tea", 1)], coupon_id="ok", at=NOW)
        orders.cancel_order(s, cancelled.order_id, "changed my mind")  # its 20 is given back
        checkout(s, "s0", [CartLine("p_tea", 1)], coupon_id="over", at=NOW)
        # drift as an import or the 0025 migration left it: nothing counted; "over" with a smaller budget
        s.execute(update(Campaign).values(spent=0))
        s.execute(update(Campaign).where(Campaign.campaign_id == "over").values(budget=5))
    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        check = runner.invoke(app, ["campaign-spend"])
        assert check.exit_code == 1, check.output
        assert "ok: spent 0.00, redemptions 20.00, budget 100.00 (drift)" in check.output
        repair = runner.invoke(app, ["campaign-spend", "--repair"])
        assert (
            repair.exit_code == 1
            and "over: spent 0.00, redemptions 20.00, budget 5.00 (over budget, held at" in repair.output
        )
        assert "2 campaigns differed, 1 repaired, 1 left" in repair.output
        with market() as s:
            assert (s.get(Campaign, "ok").spent, s.get(Campaign, "over").spent) == (20, 5)
        with transaction(market) as s:
            s.execute(update(Campaign).where(Campaign.campaign_id == "over").values(budget=50))
        assert runner.invoke(app, ["campaign-spend", "--repair"]).exit_code == 0
        again = runner.invoke(app, ["campaign-spend"])
        assert again.exit_code == 0 and "0 campaigns differed" in again.output
    finally:
        get_settings.cache_clear()


def test_db_load_refuses_a_bad_events_option_before_touching_the_database(monkeypatch, tmp_path):
    """`--events bogus` migrated the database, then ended in the importer's ValidationError traceback."""
    from crosscart.cli import app as root

    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CROSSCART_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(root, ["db", "load", str(tmp_path), "--events", "bogus"])
    finally:
        get_settings.cache_clear()
    assert (
        result.exit_code == 2 and "'bogus' is not one of" in result.output and "'purchases'" in result.output
    )
    assert not (tmp_path / "data" / "crosscart.db").exists()


def test_db_load_of_a_directory_that_is_no_marketplace_is_one_line(database_url, monkeypatch, tmp_path):
    from crosscart.cli import app as root

    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(root, ["db", "load", str(tmp_path)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error: missing marketplace file {tmp_path}" in result.output
