"""Round 3 of attacking the API and console as a hostile client (holes the earlier rounds' tests and
docs/api.md do not list): each test failed before its fix."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from serving.http import HEALTH_BODY, HEALTH_HEADERS, MAX_HEADER_BYTES, server_options
from serving.http_httptools import HeaderTimeoutHttpToolsProtocol
from serving.routers import models as models_api
from tests.resilience.conftest import FakeTransport, running_server
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in
from training import registry_view

PORT = 18702  # this helper's range (18700-18749)


def _addresses_counted(app, **options) -> list[int]:
    """Statuses of 6 anonymous reads, each claiming another address in X-Forwarded-For, over a real
    socket from 127.0.0.1 (the address an API bound to its default interface sees for every client)."""
    with running_server(app, PORT, lifespan="off", **options):
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=10) as http:
            return [
                http.get("/v1/categories", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                for i in range(6)
            ]


def test_a_client_cannot_choose_the_address_its_limits_count_against(make_client, settings):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default, and `crosscart serve` binds there:
    every client could name a new address per request and never meet the anonymous rate limit (or the
    failed-key throttle). Only proxies named in CROSSCART_FORWARDED_ALLOW_IPS are believed now."""
    app = make_client(settings=settings.model_copy(update={"rate_limit_anonymous_per_minute": 3})).app
    statuses = _addresses_counted(app, **server_options(5, "", 20))
    assert statuses[:3] == [200] * 3 and statuses[3:] == [429] * 3
    behind_a_proxy = _addresses_counted(app, **server_options(5, "127.0.0.1", 20))  # the proxy's word counts
    assert behind_a_proxy == [200] * 6


def test_endless_request_headers_are_refused_not_buffered():
    """The httptools parser buffers headers without limit (h11 stops at 16 KiB): one connection held
    100 MB of a single header in the server's memory. Past MAX_HEADER_BYTES it gets 431 and is closed;
    a request whose headers are complete is never refused for the size of a body read with them."""

    async def run():
        protocol = HeaderTimeoutHttpToolsProtocol(
            config=uvicorn.Config(app=None, log_level="error"), server_state=ServerState(), app_state={}
        )
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /v1/categories HTTP/1.1\r\nHost: api\r\n")
        line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        for _ in range(MAX_HEADER_BYTES // len(line) + 2):
            if transport.closing:
                break
            protocol.data_received(line)
        return bytes(transport.written), transport.closing

    written, closed = asyncio.run(run())
    assert written.startswith(b"HTTP/1.1 431 ") and closed
    assert server_options(5, "", 20)["h11_max_incomplete_event_size"] == MAX_HEADER_BYTES  # the h11 twin


def test_headers_read_with_a_large_body_are_not_refused():
    received = []

    async def app(scope, receive, send):
        message = await receive()
        received.append(len(message.get("body", b"")))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run():
        protocol = HeaderTimeoutHttpToolsProtocol(
            config=uvicorn.Config(app, log_level="error"), server_state=ServerState(), app_state={}
        )
        transport = FakeTransport()
        protocol.connection_made(transport)
        body = b"x" * (4 * MAX_HEADER_BYTES)
        protocol.data_received(
            b"POST /x HTTP/1.1\r\nHost: api\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        for _ in range(100):
            if transport.written:
                break
            await asyncio.sleep(0.01)
        return bytes(transport.written)

    assert asyncio.run(run()).startswith(b"HTTP/1.1 204 ") and received == [4 * MAX_HEADER_BYTES]


def test_the_host_header_never_reaches_a_location(client):
    """A trailing slash was redirected to an absolute URL built from the request's Host header:
    `GET /v1/categories/` with `Host: evil.example` answered `Location: http://evil.example/v1/categories`
    (an open redirect, and a poisoned answer for any cache keyed without the Host)."""
    for path in ("/v1/categories/", "/v1/products/", "/console/", "/docs/"):
        r = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert "location" not in r.headers and r.status_code == 404, (path, r.status_code, r.headers)


def test_the_fast_path_reads_an_id_as_the_route_does(client, keys):
    """The recommendation fast path percent-decoded the already decoded path once more: the same URL was
    shopper `s%31`'s page from FastAPI (first call, key not cached) and shopper s1's from the fast path.
    Over a real socket: the test client decodes the path twice itself."""
    storefront = auth(keys["storefront"])
    with running_server(client.app, PORT, lifespan="off", **server_options(5, "", 20)):
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=10) as http:
            pages = [http.get("/v1/shoppers/s%2531/recommendations", headers=storefront) for _ in range(3)]
    assert [p.status_code for p in pages] == [200] * 3
    assert [p.json()["shopper_id"] for p in pages] == ["s%31"] * 3


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/console/keys")</script></svg>'


def test_svg_plots_cannot_run_script_in_the_console(client, keys, settings, monkeypatch):
    """A plot is any file a training run logged under plots/; an SVG one with a script ran in the console's
    origin when an admin opened its link (a data scientist's run could then act with the admin's
    session). Plots are served sandboxed, with no script, from the API and the console alike."""
    version = registry_view.VersionView(
        name=settings.model_name, version="1", run_id="r1", aliases=(), created_ms=0, model="als",
        plots=("plots/loss.svg",),
    )  # fmt: skip
    monkeypatch.setattr(models_api.registry_cache, "versions", lambda uri, name: [version])
    monkeypatch.setattr(registry_view, "plot_bytes", lambda *args: SVG)
    path = f"/models/{settings.model_name}/versions/1/plots/loss.svg"
    api = client.get(f"/v1{path}", headers=auth(keys["data_scientist"]))
    sign_in(client, keys["admin"])
    console = client.get(f"/console{path}")
    for r in (api, console):
        assert r.status_code == 200 and r.content == SVG
        policy = r.headers.get_list("content-security-policy")  # the plot's own, not the console's too
        assert policy == [models_api.PLOT_HEADERS["Content-Security-Policy"]], policy
        assert "sandbox" in policy[0] and "default-src 'none'" in policy[0]
        assert "frame-ancestors 'none'" in policy[0]
        assert "nosniff" in r.headers["x-content-type-options"]


def test_a_chunked_body_is_bounded_whatever_the_method(make_client, settings, keys, session_factory):
    """The body-size limit let a chunked body through unread on GET, HEAD, OPTIONS and DELETE; with an
    Idempotency-Key that layer then read all of it into memory (a 300 MB DELETE body took the server from
    0.4 to 1.3 GB) and the request went on."""
    client = make_client(settings=settings.model_copy(update={"max_body_bytes": 1_000}))
    admin = auth(keys["admin"])
    made = client.post("/v1/api-keys", json={"role": "storefront"}, headers=admin).json()

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for _ in range(20):
            yield b"x" * 100

    for method in ("DELETE", "GET"):
        r = client.request(
            method, f"/v1/api-keys/{made['id']}", content=chunks(),
            headers={**admin, "Idempotency-Key": f"big-{method}"},
        )  # fmt: skip
        assert r.status_code == 413 and r.json()["code"] == "body_too_large", (method, r.status_code)
    listed = client.get("/v1/api-keys", params={"role": "storefront"}, headers=admin).json()["items"]
    assert [k["revoked_at"] for k in listed if k["id"] == made["id"]] == [None]


def test_impression_tokens_are_not_signed_with_a_published_secret(client, keys):
    """CROSSCART_ADS_TOKEN_SECRET defaulted to a string in the source: anyone could sign a token for any
    keyword campaign at any price and bill a competitor's daily budget with one click. Left empty, the
    secret is random (one per `crosscart serve`, shared by its workers)."""
    from commerce.services.ads import new_claim, sign_token

    body = {"name": "k", "daily_budget": "50", "product_ids": ["p01"],
            "keywords": [{"keyword": "serum", "match_type": "exact", "bid": "1"}]}  # fmt: skip
    campaign = client.post("/v1/merchants/m1/keyword-campaigns", json=body, headers=auth(keys["merchant"]))
    assert campaign.status_code == 201, campaign.text
    claim = new_claim(
        campaign_id=campaign.json()["campaign_id"], keyword_id=1, product_id="p01", slot=1,
        price=Decimal("50"), shopper_id=None,
    )  # fmt: skip
    forged = sign_token("crosscart-dev-ads-secret", claim)
    r = client.post("/v1/search/clicks", json={"token": forged}, headers=auth(keys["storefront"]))
    assert r.status_code == 422 and r.json()["code"] == "invalid_token"


def test_serve_gives_its_workers_one_generated_secret(monkeypatch):
    from crosscart import settings as settings_module
    from crosscart.cli import serve as serve_cli

    monkeypatch.setattr(settings_module, "get_settings", settings_module.Settings)  # uncached
    for name in serve_cli.GENERATED_SECRETS:
        monkeypatch.setenv(name, "")  # unset; restored after the test
    seen = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda *a, **kw: seen.update({n: os.environ[n] for n in serve_cli.GENERATED_SECRETS})
    )
    serve_cli.serve(host="127.0.0.1", port=PORT, workers=1, log_level="error")
    assert all(len(value) >= 32 for value in seen.values()) and len(set(seen.values())) == 2
    monkeypatch.setenv("CROSSCART_ADS_TOKEN_SECRET", "configured")
    serve_cli.serve(host="127.0.0.1", port=PORT, workers=1, log_level="error")
    assert seen["CROSSCART_ADS_TOKEN_SECRET"] == "configured"


@pytest.mark.parametrize(
    "config",
    [{"model_alias": "../../x"}, {"model_alias": 5}, {"model_alias": "a" * 5000},
     {"interleave": ["champion", "../x"]}, {"interleave": ["champion", ["x"]]}],
)  # fmt: skip
def test_a_variant_names_only_a_servable_alias(client, keys, config):
    """A variant's `model_alias` was any JSON value: `../../x` was stored, started and polled for in the
    registry by a model store of its own. Aliases follow the rule promotion follows (serving.ab.ALIAS)."""
    body = {"name": "aliases", "variants": [{"name": "a", "weight": 1, "config": config},
                                            {"name": "b", "weight": 1}]}  # fmt: skip
    r = client.post("/v1/experiments", json=body, headers=auth(keys["marketer"]))
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "coupon_id", ["c-10off\u200b", "c\u202effo01-", "\ufeffc-10off", "vip/x", "c\u2066x"]
)
def test_a_coupon_id_is_visible_and_reachable(client, keys, coupon_id):
    """Ids that look like another (zero-width space, BOM, bidi override) or that no URL reaches (`/`:
    decoded before routing, so such a coupon could be redeemed but never read, edited or retired through
    the API or the console) are refused, at creation and in the CLI and import, which share the rule."""
    from commerce.errors import ValidationError
    from commerce.services.coupons import check_coupon_id

    r = client.post(
        "/v1/coupons",
        json={"kind": "amount_off", "value": "5", "coupon_id": coupon_id},
        headers=auth(keys["marketer"]),
    )
    assert r.status_code == 422, r.text
    with pytest.raises(ValidationError):
        check_coupon_id(coupon_id)


class BodyReader:
    """Reads the whole request body, then answers 204; records what it got (bytes, or 'disconnect')."""

    def __init__(self) -> None:
        self.got: list = []

    async def __call__(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.got.append("disconnect")
                return
            body, more = body + message.get("body", b""), message.get("more_body", False)
        self.got.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _until(condition, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def test_a_trickled_body_does_not_hold_its_connection(http_protocol):
    """The header deadline ended with the headers: a body sent a byte now and then held the connection
    and its request task forever (a POST was still open after 32 s of a 100-byte body, one byte every
    4 s). A body now has the header timeout plus a second per 16 KiB of it; a body sent at a normal pace
    in several reads is read whole."""
    app = BodyReader()

    async def run():
        config = uvicorn.Config(app, log_level="error", timeout_keep_alive=1)
        slow = http_protocol(config=config, server_state=ServerState(), app_state={})
        slow_out = FakeTransport()
        slow.connection_made(slow_out)
        slow.data_received(b"POST /x HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n" + b"x")
        closed = await _until(lambda: slow_out.closing)
        slow.connection_lost(None)
        paced = http_protocol(config=config, server_state=ServerState(), app_state={})
        paced_out = FakeTransport()
        paced.connection_made(paced_out)
        paced.data_received(b"POST /x HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n" + b"y" * 50)
        await asyncio.sleep(0.3)
        paced.data_received(b"y" * 50)
        answered = await _until(lambda: paced_out.written)
        return closed, answered, bytes(paced_out.written)

    closed, answered, written = asyncio.run(run())
    assert closed and answered and written.startswith(b"HTTP/1.1 204 ")
    assert app.got == ["disconnect", b"y" * 100]


def test_an_exposure_names_the_assigned_variant(client, keys, session_factory):
    """The first exposure logged is the one analysed, and any variant was accepted: a shopper key could
    log itself into the arm it liked before any page was shown (or a unit outside the traffic slice)."""
    from commerce.services.experiments import get_experiment
    from experiments.ab.assignment import ExperimentSpec, assign

    marketer, shopper = auth(keys["marketer"]), auth(keys["shopper"])
    body = {"name": "arms", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    assert client.post("/v1/experiments", json=body, headers=marketer).status_code == 201
    assert client.post("/v1/experiments/arms/start", headers=marketer).status_code == 200
    with session_factory() as s:
        mine = assign(ExperimentSpec.from_config(get_experiment(s, "arms").as_config()), "s1")
    other = {"a": "b", "b": "a"}[mine]
    url = "/v1/experiments/arms/exposures"
    refused = client.post(url, json={"unit_id": "s1", "variant": other}, headers=shopper)
    assert refused.status_code == 422, refused.text
    logged = client.post(url, json={"unit_id": "s1", "variant": mine}, headers=shopper)
    assert logged.json() == {"first_exposure": True}
    assert client.get(url, headers=marketer).json()["counts"] == {mine: 1, other: 0}


HEALTH = b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n"


async def _health_app(scope, receive, send):
    """The app's own /health answer (serving.routers.health answers the same body)."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEALTH_HEADERS})
        await send({"type": "http.response.body", "body": HEALTH_BODY})


def test_health_checks_a_client_does_not_read_are_not_buffered(http_protocol):
    """/health is answered in the read callback, which wrote every answer whether or not the client read
    them: 40 MB of pipelined checks never read took the server from 0.4 to 0.7 GB. Once the transport
    asks to stop writing, checks wait their turn under flow control like any request."""

    async def run():
        protocol = http_protocol(
            config=uvicorn.Config(_health_app, log_level="error"), server_state=ServerState(), app_state={}
        )
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(HEALTH)
        answered_at_once = transport.written.count(b"HTTP/1.1 200")
        protocol.pause_writing()  # the client's receive window and our buffer are full
        protocol.data_received(HEALTH * 50)
        await asyncio.sleep(0.2)
        while_paused = transport.written.count(b"HTTP/1.1 200")
        protocol.resume_writing()
        drained = await _until(lambda: transport.written.count(b"HTTP/1.1 200") == 51)
        return answered_at_once, while_paused, drained

    answered_at_once, while_paused, drained = asyncio.run(run())
    assert answered_at_once == 1 and while_paused == 1 and drained


def test_a_nul_character_is_a_client_error_on_postgresql(database_url, tmp_path, open_client):
    """PostgreSQL refuses NUL in text, and every string a request carried to it (a product id in the
    path, a merchant's name in a body, a shopper id in an event) made that refusal a 500. It is a 422;
    SQLite stores such text, so there the requests simply go on."""
    from tests.resilience.conftest import fault_settings, make_keys, seeded_factory

    factory = seeded_factory(database_url)
    admin = auth(make_keys(factory)["admin"])
    client = open_client(fault_settings(tmp_path), factory)
    client._transport.raise_server_exceptions = False
    application = {"name": "N\u0000", "country": "JP", "licence_no": "L-\u0000", "brands": ["B"]}
    event = {"event_id": "e\u0000", "ts": "2026-01-01T00:00:00Z", "shopper_id": "s\u00001",
             "event_type": "view", "product_id": "p01"}  # fmt: skip
    answers = [
        client.get("/v1/products/p%0001"),
        client.get("/v1/merchants/m%001", headers=admin),
        client.post("/v1/merchants", json=application),
        client.post("/v1/events", json={"events": [event]}, headers=admin),
    ]
    statuses = [r.status_code for r in answers]
    if database_url.startswith("postgresql"):
        assert statuses == [422] * 4 and {r.json()["code"] for r in answers} == {"invalid_request"}
    else:
        assert 500 not in statuses, statuses
    factory.kw["bind"].dispose()
