"""The search refresh's ads read ending past the statement timeout (the 30-day click-rate counts over a
large `ad_impressions`, a loaded server) while the catalog read before it succeeded. Both were one step:
the documents read were thrown away with the ads, so the keyword index stopped following the catalog for
as long as the ads read kept timing out (a renamed product not found under its new name, refresh after
refresh). The index is now reconciled whatever the ads read does; the ads snapshot stays as it was, and
the search loop still reports the failure (`/v1/ready/details`, one log line)."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update

from commerce.catalog import Product
from commerce.db import transaction
from serving import search as search_module
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth


def _found(client, key: str, q: str) -> list[str]:
    response = client.get("/v1/search", params={"q": q}, headers=auth(key))
    assert response.status_code == 200, response.text
    return [hit["product_id"] for hit in response.json()["items"]]


def test_an_ads_read_past_the_statement_timeout_leaves_the_index_following_the_catalog(
    database_url, tmp_path, open_client, monkeypatch
):
    if not database_url.startswith("postgresql"):
        pytest.skip("a statement timeout: PostgreSQL's (SQLite has none)")
    factory = seeded_factory(database_url, buyers=1, statement_timeout=0.5)
    key = make_keys(factory, buyers=1)["storefront"]
    client = open_client(fault_settings(tmp_path), factory)
    state = client.app.state.serving
    ads_before = client.app.state.search.ads_snapshot
    real = search_module.AdsSnapshot.load

    def slow_load(session, now, counts=None):  # the counts' query, past the 0.5 s statement timeout
        session.execute(text("SELECT pg_sleep(2)"))
        return real(session, now, counts)

    monkeypatch.setattr(search_module.AdsSnapshot, "load", slow_load)
    with transaction(factory) as s:
        s.execute(update(Product).where(Product.product_id == "p01").values(title="Zephyrine kettle"))
    assert not state.search_refresh.refresh()  # the loop says it failed ...
    assert state.search_refresh.error_code == "failed" and "QueryCanceled" in state.search_refresh.last_error
    assert _found(client, key, "Zephyrine") == ["p01"]  # ... and the index follows the catalog (was [])
    assert client.app.state.search.ads_snapshot is ads_before  # the ads as they were
