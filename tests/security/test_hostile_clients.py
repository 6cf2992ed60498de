"""Holes found by attacking the API and the console as a hostile client (issue 19's unlisted checks):
each test failed before its fix."""

from __future__ import annotations

import json

import pytest

from commerce.services.access import hash_key
from tests.serving.conftest import auth
from tests.serving.test_console import CSRF, sign_in

HUGE = str(10**30)  # beyond any database integer


def test_every_integer_query_parameter_is_bounded(client):
    """An unbounded offset reached the database as an integer it cannot hold (500), and a deep one costs
    a scan: every integer query parameter of /v1 declares both bounds."""
    spec = client.get("/openapi.json").json()
    unbounded = [
        (path, method, p["name"])
        for path, item in spec["paths"].items()
        for method, op in item.items()
        for p in op.get("parameters", [])
        if p["in"] == "query"
        and p["schema"].get("type") == "integer"
        and not {"maximum", "minimum"} <= set(p["schema"])
    ]
    assert unbounded == []


def test_huge_offsets_are_refused_not_a_server_error(client, keys):
    client._transport.raise_server_exceptions = False
    r = client.get(f"/v1/coupons?offset={HUGE}", headers=auth(keys["marketer"]))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "role, page",
    [
        ("marketer", "/console/coupons"),
        ("marketer", "/console/campaigns"),
        ("data_scientist", "/console/experiments"),
        ("admin", "/console/keys"),
        ("merchant", "/console/shop"),
        ("merchant", "/console/keyword-campaigns"),
    ],
)
def test_console_lists_refuse_huge_offsets(client, keys, role, page):
    client._transport.raise_server_exceptions = False
    sign_in(client, keys[role])
    assert client.get(page).status_code == 200
    assert client.get(f"{page}?offset={HUGE}").status_code == 422


@pytest.mark.parametrize(
    "field", ["name", "kind", "value", "min_spend", "per_shopper_limit", "requires_grant"]
)
def test_coupon_edit_cannot_null_a_required_term(client, keys, field):
    """PATCH with `null` for a term the coupon must have was a NOT NULL violation (500)."""
    client._transport.raise_server_exceptions = False
    r = client.patch("/v1/coupons/c-10off", json={field: None}, headers=auth(keys["marketer"]))
    assert r.status_code == 422, r.text
    assert client.get("/v1/coupons/c-10off", headers=auth(keys["marketer"])).json()[field] is not None


def test_console_pages_cannot_be_framed(client, keys):
    """Clickjacking: a console page in another site's frame would take the signed-in user's clicks. And
    the policy allows only the console's own scripts and styles: it set only `frame-ancestors`, so an
    injected `<script>`, inline handler or `<base>` would have run (tests/console checks in Chromium that
    the pages break no rule of it)."""
    strict = {
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    }  # fmt: skip
    for r in (client.get("/console/sign-in"), client.get("/console", follow_redirects=False)):
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers.get_list("content-security-policy") == [r.headers["content-security-policy"]]
        assert set(r.headers["content-security-policy"].split("; ")) == strict
        assert r.headers["x-content-type-options"] == "nosniff"
    sign_in(client, keys["admin"])
    page = client.get("/console/keys")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "same-origin"


def test_a_chosen_id_is_one_segment_in_every_console_url(client, keys):
    """Coupon ids and experiment names are chosen by marketers. Put raw into a URL, `c-10off?x` made the
    list link open coupon c-10off and the Retire button on its own page retire c-10off (the query string
    cut the id short): ids are percent-encoded as one path segment wherever the console builds a URL."""
    mk = auth(keys["marketer"])
    made = client.post(
        "/v1/coupons", json={"kind": "amount_off", "value": "5", "coupon_id": "c-10off?x"}, headers=mk
    )
    assert made.status_code == 201, made.text
    variants = [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
    assert client.post(
        "/v1/experiments", json={"name": "pilot?x", "variants": variants}, headers=mk
    ).is_success
    sign_in(client, keys["marketer"])
    assert 'href="/console/coupons/c-10off%3Fx"' in client.get("/console/coupons").text
    assert 'href="/console/experiments/pilot%3Fx"' in client.get("/console/experiments").text
    page = client.get("/console/coupons/c-10off%3Fx").text
    assert 'action="/console/coupons/c-10off%3Fx/retire"' in page
    token = CSRF.search(page).group(1)
    retired = client.post(
        "/console/coupons/c-10off%3Fx/retire", data={"csrf_token": token}, follow_redirects=False
    )
    assert retired.status_code == 303 and retired.headers["location"] == "/console/coupons/c-10off%3Fx"
    assert client.get("/v1/coupons/c-10off", headers=mk).json()["ends_at"] is None  # the other coupon
    assert client.get("/v1/coupons/c-10off%3Fx", headers=mk).json()["ends_at"] is not None
    page = client.get("/console/experiments/pilot%3Fx").text
    assert 'action="/console/experiments/pilot%3Fx/start"' in page


def test_secrets_glued_to_other_text_are_masked_in_the_logs(client, keys, log_lines):
    """The mask needed a word boundary around a key hash or an ID number: a caller's request id
    `h<key hash>` or a path segment `ID<id number>` reached the log lines as they were."""
    digest = hash_key(keys["admin"])
    id_number = "11010519491231002X"
    admin = auth(keys["admin"])
    client.get(f"/v1/shoppers/ID{id_number}/orders", headers={**admin, "X-Request-ID": "h" + digest})
    client.get(f"/v1/products/sha256{digest.upper()}", headers={**admin, "X-Request-ID": f"id{id_number}7"})
    text = "\n".join(json.dumps(line) for line in log_lines())
    assert "/v1/shoppers/ID[redacted]/orders" in text
    for secret in (digest, digest.upper(), id_number):
        assert secret not in text


def test_idempotent_replays_count_against_the_rate_limit(make_client, settings, keys):
    """A replay was answered before the caller was authenticated or counted: a stored response could be
    fetched without limit, by a revoked key, or by a key that was never valid (its 401 stored)."""
    client = make_client(settings=settings.model_copy(update={"rate_limit_per_minute": 3}))
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "replay-1"}
    cart = {"lines": [{"product_id": "p05", "quantity": 1}]}
    statuses = [
        client.post("/v1/shoppers/s1/orders", json=cart, headers=headers).status_code for _ in range(6)
    ]
    assert statuses[:3] == [201, 201, 201] and statuses[3:] == [429, 429, 429]


def test_a_revoked_key_gets_no_replay(client, keys):
    admin = auth(keys["admin"])
    made = client.post("/v1/api-keys", json={"role": "shopper", "shopper_id": "s1"}, headers=admin).json()
    headers = {**auth(made["key"]), "Idempotency-Key": "revoked-1"}
    cart = {"lines": [{"product_id": "p05", "quantity": 1}]}
    assert client.post("/v1/shoppers/s1/orders", json=cart, headers=headers).status_code == 201
    assert client.delete(f"/v1/api-keys/{made['id']}", headers=admin).status_code in (200, 204)
    assert client.post("/v1/shoppers/s1/orders", json=cart, headers=headers).status_code == 401


def test_an_idempotent_request_while_the_database_is_down_is_a_503(client, keys, monkeypatch):
    """Fault injection: the claim's INSERT failing with the database gone was a 500."""
    from sqlalchemy.exc import OperationalError

    from commerce.services import idempotency

    def down(*_, **__):
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    client._transport.raise_server_exceptions = False
    monkeypatch.setattr(idempotency, "claim", down)
    headers = {**auth(keys["shopper"]), "Idempotency-Key": "down-1"}
    r = client.post(
        "/v1/shoppers/s1/orders", json={"lines": [{"product_id": "p05", "quantity": 1}]}, headers=headers
    )
    assert (
        r.status_code == 503
        and r.headers["retry-after"]
        and r.headers["content-type"] == "application/problem+json"
    )


def test_console_pages_count_against_the_keys_rate_limit(make_client, settings, keys):
    """The console ran every page (a campaign report reads every member's purchases) without counting
    it: a signed-in key had no limit there. Its pages now count against the key's own quota."""
    client = make_client(settings=settings.model_copy(update={"rate_limit_per_minute": 5}))
    sign_in(client, keys["marketer"])  # the sign-in page and form count per address, not per key
    statuses = [client.get("/console/campaigns").status_code for _ in range(8)]
    assert 429 in statuses and statuses[0] == 200
    refused = client.get("/console/campaigns")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "Too many requests" in refused.text and refused.headers["x-frame-options"] == "DENY"
    assert client.get("/v1/campaigns", headers=auth(keys["marketer"])).status_code == 429  # one quota
