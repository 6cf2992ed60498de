"""`/metrics` (route names, request counts, latencies, model versions, refresh-loop ages and failures)
answered every client on the network. It now answers a client inside CROSSCART_METRICS_ALLOW (default: the
loopback) or one presenting CROSSCART_METRICS_TOKEN; everyone else gets the 404 of a path that does not
exist. The client address is uvicorn's (X-Forwarded-For believed from CROSSCART_FORWARDED_ALLOW_IPS only)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from crosscart.settings import Settings
from tests.serving.conftest import LOOPBACK

OUTSIDE = ("203.0.113.9", 40000)
PROXY = ("10.0.0.1", 40000)  # the reverse proxy CROSSCART_FORWARDED_ALLOW_IPS names in these tests
TOKEN = "scrape-9f2c41d7e8b06a35"


def _read(app, peer, headers=None, proxy: str | None = None):
    """GET /metrics from `peer`, through uvicorn's proxy-header handling as `crosscart serve` sets it up
    for `proxy` (none: the header is never believed, as with CROSSCART_FORWARDED_ALLOW_IPS empty)."""
    outer = app if proxy is None else ProxyHeadersMiddleware(app, trusted_hosts=proxy)
    return TestClient(outer, client=peer).get("/metrics", headers=headers)


@pytest.fixture
def open_app(make_client, settings):
    """An app with a metrics token and a trusted proxy, started."""
    return make_client(
        settings=settings.model_copy(update={"metrics_token": TOKEN, "forwarded_allow_ips": PROXY[0]})
    ).app


def test_an_outside_client_gets_the_404_of_a_missing_path(client):
    refused = _read(client.app, OUTSIDE)
    missing = TestClient(client.app, client=OUTSIDE).get("/no-such-page")
    assert refused.status_code == 404 and "crosscart_" not in refused.text
    assert refused.json() == missing.json() | {"instance": "/metrics"}
    assert _read(client.app, ("testclient", 50000)).status_code == 404  # no address: not allowed


OTHER_METHODS = ("HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.mark.parametrize("method", OTHER_METHODS)
def test_every_method_from_outside_gets_the_404_of_a_missing_path(client, method):
    """Any method, not only GET: a 405 (with its Allow: GET) told a scanner there was a route here."""
    outside = TestClient(client.app, client=OUTSIDE)
    refused, missing = outside.request(method, "/metrics"), outside.request(method, "/no-such-page")
    assert refused.status_code == missing.status_code == 404
    assert "allow" not in refused.headers
    assert refused.headers["content-type"] == missing.headers["content-type"]
    if method != "HEAD":
        assert refused.json() == missing.json() | {"instance": "/metrics"}


def test_an_admitted_client_gets_405_for_any_method_but_get(client):
    inside = TestClient(client.app, client=LOOPBACK)
    for method in OTHER_METHODS:
        answer = inside.request(method, "/metrics")
        assert (answer.status_code, answer.headers.get("allow")) == (405, "GET"), method


@pytest.mark.parametrize("peer", [LOOPBACK, ("127.8.9.10", 1), ("::1", 1), ("::ffff:127.0.0.1", 1)])
def test_the_loopback_reads_the_metrics(client, peer):
    answer = _read(client.app, peer)
    assert answer.status_code == 200 and "crosscart_http_requests_total" in answer.text


def test_the_token_admits_a_scraper_elsewhere_and_nothing_else_does(open_app):
    answer = _read(open_app, OUTSIDE, {"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and "crosscart_http_requests_total" in answer.text
    wrong_ones = (
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        "Bearer ",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer é".encode(),
    )
    for wrong in wrong_ones:
        assert _read(open_app, OUTSIDE, {"Authorization": wrong}).status_code == 404, wrong


def test_no_token_is_configured_by_default(client):
    assert _read(client.app, OUTSIDE, {"Authorization": "Bearer "}).status_code == 404
    assert _read(client.app, OUTSIDE, {"Authorization": "Bearer x"}).status_code == 404


def test_the_allow_list_is_a_setting(make_client, settings):
    app = make_client(settings=settings.model_copy(update={"metrics_allow": "203.0.113.0/24"})).app
    assert _read(app, OUTSIDE).status_code == 200
    assert _read(app, LOOPBACK).status_code == 404


def test_a_forged_forwarded_for_does_not_get_in(open_app, client):
    forged = {"X-Forwarded-For": "127.0.0.1"}
    assert _read(client.app, OUTSIDE, forged).status_code == 404  # no proxy trusted
    assert _read(open_app, OUTSIDE, forged, proxy=PROXY[0]).status_code == 404  # not from the proxy
    # through the trusted proxy, which appends the sender's address: uvicorn believes that one
    through = {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}
    assert _read(open_app, PROXY, through, proxy=PROXY[0]).status_code == 404
    assert _read(open_app, PROXY, forged, proxy=PROXY[0]).status_code == 200  # a scraper on the proxy's host


def test_under_a_trust_everyone_setting_no_forwarded_address_gets_in(make_client, settings):
    """`CROSSCART_FORWARDED_ALLOW_IPS=*`: uvicorn takes anyone's leftmost entry, so any client can be
    127.0.0.1; only a request without the header is judged by its address."""
    app = make_client(settings=settings.model_copy(update={"forwarded_allow_ips": "*"})).app
    assert _read(app, OUTSIDE, {"X-Forwarded-For": "127.0.0.1"}, proxy="*").status_code == 404
    assert _read(app, LOOPBACK, proxy="*").status_code == 200


@pytest.mark.parametrize(
    "forwarded",
    [
        [("X-Forwarded-For", "203.0.113.9")],
        [("X-Forwarded-For", "127.0.0.1, 203.0.113.9")],  # the visitor forged the left entry
        [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "203.0.113.9")],  # the proxy added a header
    ],
)
def test_a_proxy_on_the_loopback_that_is_not_trusted_lets_nobody_in(open_app, client, forwarded):
    """nginx on the API's host, missing from CROSSCART_FORWARDED_ALLOW_IPS: every visitor arrives from
    127.0.0.1. The request it forwarded is not the loopback's own (the token still works through it)."""
    assert _read(client.app, LOOPBACK, forwarded).status_code == 404
    assert _read(open_app, LOOPBACK, forwarded, proxy=PROXY[0]).status_code == 404
    token = [*forwarded, ("Authorization", f"Bearer {TOKEN}")]
    assert _read(open_app, LOOPBACK, token, proxy=PROXY[0]).status_code == 200


def test_the_metrics_are_not_in_the_published_schema(client):
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_mistyped_network_fails_when_the_settings_are_read(tmp_path):
    with pytest.raises(ValidationError, match="10.0.0.0/33"):
        Settings(data_dir=tmp_path, metrics_allow="127.0.0.0/8, 10.0.0.0/33")


@pytest.mark.parametrize("entry", ["127.0.0.1:5555", "[::1]:5555"])
def test_a_scraper_on_the_trusted_proxys_host_is_let_in_when_the_proxy_appends_a_port(open_app, entry):
    """uvicorn strips the port (and IPv6 brackets) from the entry it believes; the check that the address
    is the sender's own compared the raw entry, so a proxy appending ports kept its scraper out."""
    assert _read(open_app, PROXY, {"X-Forwarded-For": entry}, proxy=PROXY[0]).status_code == 200
