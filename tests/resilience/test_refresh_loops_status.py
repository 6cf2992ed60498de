"""Session 19: a refresh loop failing (the catalog snapshot, the search index, the experiments growing
stale) showed only as one log line at the start of the episode; `/ready` stays 200 (stale data beats
none), so an operator without the log could not tell. `GET /v1/ready/details` now says, per loop, when it
last succeeded, the age of the data served, the consecutive failures and their kind (one word), and
`refresh: degraded`; `/metrics` has the same figures."""

from __future__ import annotations

import time

from sqlalchemy import exc

from serving import search as search_module
from serving.middleware import EXPOSITION_SECONDS
from serving.refresh import Refreshing
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth, scrape

EVERY = 0.1  # seconds between refreshes
SECRETS = ("10.0.0.7", "s3cret", "SELECT", "Traceback")
DOWN = exc.OperationalError(
    "SELECT * FROM products", {}, Exception("could not connect to server at 10.0.0.7, password s3cret")
)


def _down(*args, **kwargs):
    raise DOWN


def _details(client, key: str) -> dict:
    response = client.get("/v1/ready/details", headers=auth(key))
    assert response.status_code == 200, response.text
    assert not any(secret in str(response.json()["refresh_loops"]) for secret in SECRETS), response.text
    return response.json()


def _wait(client, key: str, until, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        said = _details(client, key)
        if until(said["refresh_loops"]) or time.monotonic() > deadline:
            return said
        time.sleep(EVERY / 2)


def _metric(client, line_start: str) -> float:
    time.sleep(EXPOSITION_SECONDS)  # one exposition answers that long: the text is then of now
    text = scrape(client)
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    assert len(values) == 1, (line_start, text)
    return values[0]


def test_failing_loops_show_failures_and_growing_age_then_recover(tmp_path, open_client, monkeypatch):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    client = open_client(
        fault_settings(tmp_path), factory, start_background=True, catalog_refresh_seconds=EVERY
    )
    admin, state = keys["admin"], client.app.state.serving
    said = _wait(client, admin, lambda loops: all(loop["status"] == "ok" for loop in loops.values()))
    loops = said["refresh_loops"]
    assert said["refresh"] == "ok" and {"catalog", "experiments", "search", "pending-orders"} <= set(loops)
    assert loops["catalog"]["consecutive_failures"] == 0 and loops["catalog"]["error"] is None
    assert loops["catalog"]["last_success"] is not None and loops["catalog"]["age_seconds"] < 5

    monkeypatch.setattr(state.catalog, "_loader", _down)
    monkeypatch.setattr(search_module, "load_documents", _down)
    said = _wait(
        client,
        admin,
        lambda loops: min(loops[n]["consecutive_failures"] for n in ("catalog", "search")) >= 3,
    )
    assert client.get("/ready").status_code == 200  # stale data keeps serving
    assert said["refresh"] == "degraded"
    for name in ("catalog", "search"):
        loop = said["refresh_loops"][name]
        assert loop["status"] == "failing" and loop["error"] == "unavailable", loop
        assert loop["consecutive_failures"] >= 3
    assert said["refresh_loops"]["experiments"]["status"] == "ok"  # its loader still works
    first, since = said["refresh_loops"]["catalog"], time.monotonic()
    failed = first["consecutive_failures"]
    _wait(client, admin, lambda loops: loops["catalog"]["consecutive_failures"] >= failed + 2)
    waited = time.monotonic() - since  # at least the time between the two ages' readings
    later = _details(client, admin)["refresh_loops"]["catalog"]
    assert later["age_seconds"] >= first["age_seconds"] + waited - 0.002  # the data served grows older
    assert later["last_success"] == first["last_success"]
    assert later["consecutive_failures"] > first["consecutive_failures"]
    assert _metric(client, 'crosscart_refresh_consecutive_failures{loop="catalog"}') >= 3
    assert _metric(client, 'crosscart_refresh_failures_total{code="unavailable",loop="search"}') >= 3
    stale_since = _metric(client, 'crosscart_refresh_last_success_timestamp_seconds{loop="catalog"}')
    assert time.time() - stale_since >= later["age_seconds"] - 1

    monkeypatch.undo()  # the database is back
    said = _wait(client, admin, lambda loops: all(loop["status"] == "ok" for loop in loops.values()))
    assert said["refresh"] == "ok"
    for name in ("catalog", "search"):
        loop = said["refresh_loops"][name]
        assert loop["consecutive_failures"] == 0 and loop["error"] is None, loop
        assert loop["age_seconds"] < later["age_seconds"]
    assert _metric(client, 'crosscart_refresh_consecutive_failures{loop="catalog"}') == 0
    assert _metric(client, 'crosscart_refresh_last_success_timestamp_seconds{loop="catalog"}') > stale_since

    for who in ("marketer", "storefront", "s1"):
        assert client.get("/v1/ready/details", headers=auth(keys[who])).status_code == 403
    assert client.get("/v1/ready/details").status_code == 401


def test_a_loop_that_stopped_refreshing_is_stale(tmp_path, open_client):
    """A loader hung (a query without a timeout) or a loop thread gone fails nothing: the age says it."""
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    admin = make_keys(factory)["admin"]
    # loaded once, no background loops: nothing refreshes after the first load
    client = open_client(fault_settings(tmp_path), factory, catalog_refresh_seconds=EVERY)
    time.sleep(4 * EVERY)
    said = _details(client, admin)
    catalog = said["refresh_loops"]["catalog"]
    assert said["refresh"] == "degraded"
    assert catalog["status"] == "stale" and catalog["consecutive_failures"] == 0, catalog
    assert catalog["age_seconds"] >= 4 * EVERY


def test_a_metric_that_cannot_be_recorded_does_not_end_the_loop(caplog):
    """Multiprocess metrics are files: one that cannot grow (a full disk) failed the refresh and ended its
    thread, and the data stopped refreshing for good."""
    loop = Refreshing("catalog", lambda: "snapshot", 60)

    def disk_full(_loop):
        raise OSError(28, "No space left on device")

    loop.on_refresh = disk_full
    assert loop.refresh() and loop.current == "snapshot" and loop.status() == "ok"
    assert "recording the refresh of catalog failed: OSError" in caplog.text
