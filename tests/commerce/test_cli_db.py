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
    finally:
        get_settings.cache_clear()
