"""The periodic refreshes (the keyword index reconciled with the catalog, the catalog snapshot, the
experiments) while the database goes away in the middle of the search refresh's read and stays away for
many refreshes: searches keep answering from the index as it was, each refresh says once that it fails
and once that it works again, and the first refresh after the outage picks up what changed meanwhile.

The database "goes away" by cutting a TCP proxy between the API and PostgreSQL."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import update

from commerce.catalog import Product
from commerce.db import make_session_factory, transaction
from serving import search as search_module
from tests.resilience.conftest import fault_settings, make_keys, proxied_engine, seeded_factory
from tests.serving.conftest import auth

PROXY_PORT = 18131
EVERY = 0.2  # seconds between refreshes: 10 or more refreshes fail in the outage


def _found(client, key: str, q: str) -> list[str]:
    response = client.get("/v1/search", params={"q": q}, headers=auth(key))
    assert response.status_code == 200, response.text
    return [hit["product_id"] for hit in response.json()["items"]]


def _lines(caplog, text: str) -> dict[str, int]:
    return {
        name: sum(r.getMessage().startswith(f"refreshing {name} {text}") for r in caplog.records)
        for name in ("search", "catalog", "experiments")
    }


def test_refreshes_through_an_outage_keep_the_index_log_once_and_catch_up(
    database_url, tmp_path, open_client, monkeypatch, caplog
):
    if not database_url.startswith("postgresql"):
        pytest.skip("the outage is simulated on PostgreSQL's TCP connection")
    factory = seeded_factory(database_url, buyers=1)
    key = make_keys(factory, buyers=1)["storefront"]
    proxy, engine = proxied_engine(database_url, PROXY_PORT, statement_timeout=5)
    real, cut = search_module.load_documents, []

    def cut_midway(session, **kwargs):  # the first refresh after `cut` is armed loses the database mid-read
        for i, doc in enumerate(real(session, **kwargs)):
            if i == 2 and cut == [True]:
                cut.append(proxy.cut())
            yield doc

    monkeypatch.setattr(search_module, "load_documents", cut_midway)
    settings = fault_settings(tmp_path)
    client = open_client(
        settings, make_session_factory(engine), start_background=True, catalog_refresh_seconds=EVERY
    )
    before = _found(client, key, "Product")
    assert before

    with caplog.at_level(logging.INFO, logger="serving"):
        cut.append(True)
        deadline = time.monotonic() + 10
        while len(cut) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(cut) == 2, "no refresh reached the documents"
        with transaction(factory) as s:  # written meanwhile, directly: the API cannot see it yet
            s.execute(update(Product).where(Product.product_id == "p01").values(title="Zephyrine kettle"))
        for _ in range(10):  # 2 s: 10 refresh intervals
            assert _found(client, key, "Product") == before  # the index as it was
            time.sleep(EVERY)
        proxy.restore()
        deadline = time.monotonic() + 10
        while _found(client, key, "Zephyrine") != ["p01"] and time.monotonic() < deadline:
            time.sleep(EVERY)

    assert _found(client, key, "Zephyrine") == ["p01"]  # caught up at the first refresh after
    assert _lines(caplog, "failed") == {"search": 1, "catalog": 1, "experiments": 1}
    assert _lines(caplog, "works again") == {"search": 1, "catalog": 1, "experiments": 1}
    engine.dispose()
    proxy.close()
    factory.kw["bind"].dispose()
