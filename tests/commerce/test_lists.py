"""Every list pages alike (items, total, limit, offset) and its filters select in the database: campaigns
(status, channel, running at a time, part of the name), API keys (role) and experiments (status)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.services import access, campaign_overview, campaigns, experiments
from crosscart.settings import get_settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _campaigns(factory):
    specs = [  # id, name, channel, starts (days after T0), length in days
        ("c-email", "Double 11 e-mail", "email", 0, 12),
        ("c-site", "Double 11 site", "site", 5, 3),
        ("c-pct", "100% off_test", "social", 20, 5),
    ]
    with transaction(factory) as s:
        for cid, name, channel, start, days in specs:
            data = campaigns.CampaignInput(name, channel, "100.00", T0 + timedelta(days=start),
                                           T0 + timedelta(days=start + days), "0.1", cid)  # fmt: skip
            campaigns.create_campaign(s, data)


def _ids(page):
    return sorted(row.campaign_id for row in page.items)


def test_campaign_filters_and_pages(market):
    _campaigns(market)
    with transaction(market) as s:
        everything = campaign_overview.list_campaigns(s)
        assert everything.total == 3 and len(everything.items) == 3
        assert all(row.spent == 0 for row in everything.items)
        assert _ids(campaign_overview.list_campaigns(s, channel="site")) == ["c-site"]
        running = campaign_overview.list_campaigns(s, active_at=T0 + timedelta(days=6))
        assert _ids(running) == ["c-email", "c-site"] and running.total == 2
        # the window is [starts_at, ends_at): a campaign has ended at its end time
        assert _ids(campaign_overview.list_campaigns(s, active_at=T0 + timedelta(days=12))) == []
        assert _ids(campaign_overview.list_campaigns(s, name="DOUBLE 11")) == ["c-email", "c-site"]
        # LIKE wildcards in the name filter are literal characters, not patterns
        assert _ids(campaign_overview.list_campaigns(s, name="100%")) == ["c-pct"]
        assert _ids(campaign_overview.list_campaigns(s, name="f_t")) == ["c-pct"]
        assert _ids(campaign_overview.list_campaigns(s, name="e%l")) == []
        first, second = (campaign_overview.list_campaigns(s, limit=2, offset=o) for o in (0, 2))
        assert (len(first.items), len(second.items), first.total, second.total) == (2, 1, 3, 3)
        assert not set(_ids(first)) & set(_ids(second))
        assert _ids(campaign_overview.list_campaigns(s, status="running")) == []
        with pytest.raises(ValidationError):
            campaign_overview.list_campaigns(s, status="paused")
        with pytest.raises(ValidationError):
            campaign_overview.list_campaigns(s, channel="fax")
        with pytest.raises(ValidationError):
            campaign_overview.list_campaigns(s, limit=0)


def test_key_and_experiment_lists_page(market):
    with transaction(market) as s:
        for _ in range(3):
            access.create_api_key(s, "marketer")
        access.create_api_key(s, "admin")
        for name in ("e1", "e2", "e3"):
            experiments.create_experiment(s, name, [("a", 0.5, None), ("b", 0.5, None)])
        experiments.start_experiment(s, "e2")
    with transaction(market) as s:
        marketers = access.list_api_keys(s, role="marketer", limit=2)
        assert (marketers.total, len(marketers.items)) == (3, 2)
        assert {k.role for k in marketers.items} == {"marketer"}
        rest = access.list_api_keys(s, role="marketer", limit=2, offset=2)
        assert len(rest.items) == 1 and rest.items[0].id not in {k.id for k in marketers.items}
        page = experiments.list_experiments(s, limit=2, offset=1)
        assert page.total == 3 and [e.name for e in page.items] == ["e2", "e3"]
        assert [e.name for e in experiments.list_experiments(s, status="running").items] == ["e2"]
        assert [c["name"] for c in experiments.running_configs(s)] == ["e2"]


def test_cli_campaign_list_prints_the_api_page(market, database_url, monkeypatch, tmp_path):
    from crosscart.cli import app

    _campaigns(market)
    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        out = runner.invoke(app, ["campaign", "list", "--active-at", "2026-11-07T00:00:00", "--limit", "1"])
        assert out.exit_code == 0, out.output
        page = json.loads(out.stdout)
        assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (2, 1, 0, 1)
        assert (
            page["items"][0]["campaign_id"] in {"c-email", "c-site"} and page["items"][0]["spent"] == "0.00"
        )
        bad = runner.invoke(app, ["campaign", "list", "--status", "paused"])
        assert bad.exit_code == 2 and "status must be one of" in bad.output
    finally:
        get_settings.cache_clear()
