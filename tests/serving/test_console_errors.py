"""Console error pages over HTTP: a crash is the console's page with a request id (nothing internal shown),
and a refused campaign plan reads as a marketer would understand it, its error code unchanged."""

from __future__ import annotations

import logging

from serving.console import shop
from tests.serving.conftest import ScriptedSource, auth
from tests.serving.test_campaign_plan import campaign, effect_model  # noqa: F401  (fixtures)
from tests.serving.test_console import sign_in


def test_a_crash_under_the_console_is_its_error_page_with_the_request_id(client, keys, monkeypatch, caplog):
    """A crash was Starlette's bare "Internal Server Error" text; now the console's page, under the strict
    CSP, naming the request id of the logged traceback and showing nothing of the exception."""

    def crash(*_, **__):
        raise RuntimeError("secret internals: postgresql://admin:hunter2@db/crosscart")

    sign_in(client, keys["merchant"])
    monkeypatch.setattr(shop, "orders_to_ship", crash)
    client._transport.raise_server_exceptions = False
    with caplog.at_level(logging.ERROR, logger="serving.console"):
        r = client.get("/console/shop", headers={"X-Request-ID": "req-crash-1"})
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "<h1>Something went wrong</h1>" in r.text and "Back to the console" in r.text
    assert r.headers["x-request-id"] == "req-crash-1" and "<code>req-crash-1</code>" in r.text
    assert "hunter2" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    logged = [rec for rec in caplog.records if rec.name == "serving.console"]
    assert (
        logged and logged[0].exc_info and logged[0].exc_info[0] is RuntimeError
    )  # the traceback, for support
    api = client.get("/health")
    assert api.status_code == 200  # the API is untouched


def test_a_refused_plan_reads_as_a_marketer_would_understand(make_client, keys, campaign, effect_model):  # noqa: F811
    """ "no shoppers in the database match region='Atlantis', segment=None" was the query, not a reason."""
    client = make_client(uplift_source=ScriptedSource(versions={"1": effect_model}, alias="1"))
    token = sign_in(client, keys["marketer"])
    r = client.post(
        f"/console/campaigns/{campaign}/plan",
        data={"csrf_token": token, "budget": "80", "region": "Atlantis"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422
    assert "There are no shoppers in region &#39;Atlantis&#39;: choose another region or segment." in r.text
    assert "None" not in r.text and "segment=" not in r.text
    both = client.post(
        f"/v1/campaigns/{campaign}/plan",
        json={"region": "Atlantis", "segment": "vip"},
        headers=auth(keys["marketer"]),
    )
    assert both.status_code == 422
    problem = both.json()
    assert (
        problem["detail"]
        == "There are no shoppers in region 'Atlantis' and segment 'vip': choose another region or segment."
    )
    assert problem["code"] == "invalid_request"  # the machine-readable code is unchanged
