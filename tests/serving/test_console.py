"""The console over HTTP (no browser): sign-in cookie, CSRF refusal, role-filtered navigation, 403 pages,
and console actions going through the API's code (coupon edit refused once granted, like the API)."""

from __future__ import annotations

import re

import pytest

from commerce.coupons import Coupon
from commerce.db import transaction
from commerce.services.access import authenticate, revoke_api_key
from serving.console.auth import COOKIE
from tests.serving.conftest import auth

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(client, key: str) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/console/sign-in")
    token = CSRF.search(page.text).group(1)
    r = client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf_token": token, "next": "/console"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return CSRF.search(client.get("/console").text).group(1)


def test_sign_in_sets_a_hardened_cookie_and_sign_out_clears_it(client, keys):
    page = client.get("/console/sign-in")
    token = CSRF.search(page.text).group(1)
    bad = client.post("/console/sign-in", data={"api_key": "cc_wrong", "csrf_token": token})
    assert bad.status_code == 401 and "Unknown or revoked" in bad.text
    r = client.post(
        "/console/sign-in", data={"api_key": keys["marketer"], "csrf_token": token}, follow_redirects=False
    )
    cookie = r.headers["set-cookie"].lower()
    assert COOKIE in cookie and "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert keys["marketer"] not in r.headers["set-cookie"]  # the key itself never goes into the cookie
    token = CSRF.search(client.get("/console").text).group(1)
    out = client.post("/console/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and "max-age=0" in out.headers["set-cookie"].lower()
    client.cookies.clear()
    assert (
        client.get("/console/campaigns", follow_redirects=False)
        .headers["location"]
        .startswith("/console/sign-in")
    )


def test_sign_out_ends_the_session_on_every_replica(make_client, settings, keys):
    """A copy of the cookie taken before signing out is refused afterwards, by this app and by another
    one sharing the secret and the database (another replica); signing in again works."""
    shared = settings.model_copy(update={"console_secret": "shared-console-secret"})
    first, second = make_client(settings=shared), make_client(settings=shared)
    token = sign_in(first, keys["marketer"])
    copied = first.cookies[COOKIE]
    second.cookies.set(COOKIE, copied, path="/console")
    assert second.get("/console/campaigns").status_code == 200
    out = first.post("/console/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    for client in (first, second):
        client.cookies.clear()
        client.cookies.set(COOKIE, copied, path="/console")
        r = client.get("/console/campaigns", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")
    sign_in(first, keys["marketer"])
    assert first.get("/console/campaigns").status_code == 200


def _refused(client) -> bool:
    r = client.get("/console/campaigns", follow_redirects=False)
    return r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")


def test_sign_out_leaves_the_keys_other_browsers_signed_in(make_client, settings, keys, session_factory):
    """Signing out ends that browser's session only (before, every browser of the key was signed out); an
    admin ends them all, on every replica, through the API or the console's keys page."""
    shared = settings.model_copy(update={"console_secret": "shared-console-secret"})
    laptop, phone, other_replica = (make_client(settings=shared) for _ in range(3))
    token = sign_in(laptop, keys["marketer"])
    sign_in(phone, keys["marketer"])
    other_replica.cookies.set(COOKIE, phone.cookies[COOKIE], path="/console")
    copied = laptop.cookies[COOKIE]
    assert (
        laptop.post("/console/sign-out", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )
    laptop.cookies.set(COOKIE, copied, path="/console")
    assert _refused(laptop)
    assert not _refused(phone) and not _refused(other_replica)
    with transaction(session_factory) as s:
        key_id = authenticate(s, keys["marketer"]).id
    ended = laptop.delete(f"/v1/api-keys/{key_id}/console-sessions", headers=auth(keys["admin"]))
    assert ended.status_code == 200 and ended.json() == {"key_id": key_id, "ended": 1}
    assert _refused(phone) and _refused(other_replica)
    assert (
        laptop.delete("/v1/api-keys/99999/console-sessions", headers=auth(keys["admin"])).status_code == 404
    )
    admin_token = sign_in(laptop, keys["admin"])
    sign_in(phone, keys["marketer"])
    keys_page = laptop.get("/console/keys").text
    assert f'action="/console/keys/{key_id}/sign-out"' in keys_page
    done = laptop.post(
        f"/console/keys/{key_id}/sign-out", data={"csrf_token": admin_token}, follow_redirects=False
    )
    assert done.status_code == 303 and _refused(phone)
    assert laptop.get("/console/keys").status_code == 200  # the admin's own session is untouched


def test_secure_cookie_follows_the_setting(make_client, settings, keys):
    client = make_client(settings=settings.model_copy(update={"console_secure_cookie": True}))
    token = CSRF.search(client.get("/console/sign-in").text).group(1)
    r = client.post(
        "/console/sign-in", data={"api_key": keys["admin"], "csrf_token": token}, follow_redirects=False
    )
    assert "secure" in r.headers["set-cookie"].lower()


def test_forms_without_their_csrf_token_are_refused(client, keys):
    token = sign_in(client, keys["marketer"])
    body = {"kind": "amount_off", "value": "5", "coupon_id": "csrf-1"}
    refused = client.post("/console/coupons/new", data=body)
    assert refused.status_code == 403 and "CSRF" in refused.text
    forged = client.post("/console/coupons/new", data={**body, "csrf_token": "forged"})
    assert forged.status_code == 403
    made = client.post("/console/coupons/new", data={**body, "csrf_token": token}, follow_redirects=False)
    assert made.status_code == 303
    header = client.post(
        "/console/coupons/csrf-1/retire", headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert header.status_code == 303  # htmx sends the token as a header


NAV = {
    "marketer": {"Campaigns", "Coupons", "Experiments"},
    "data_scientist": {"Experiments", "Models"},
    "admin": {
        "Campaigns",
        "Coupons",
        "Experiments",
        "Models",
        "Merchant review",
        "API keys",
        "My shop",
        "Shipments",
        "Keyword ads",
    },
    "merchant": {"My shop", "Shipments", "Keyword ads"},
    "storefront": set(),
    "shopper": set(),
}
PAGES = {
    "/console/campaigns": "marketing",
    "/console/coupons": "marketing",
    "/console/experiments": "experiments",
    "/console/merchants": "admin",
    "/console/keys": "admin",
    "/console/shop": "merchant",
    "/console/shop/orders": "merchant",
    "/console/keyword-campaigns": "merchant",
}
ALLOWED = {
    "marketing": {"marketer", "admin"},
    "experiments": {"marketer", "data_scientist", "admin"},
    "admin": {"admin"},
    "merchant": {"merchant", "admin"},
}


@pytest.mark.parametrize("role", sorted(NAV))
def test_navigation_and_pages_follow_the_api_roles(client, keys, role):
    sign_in(client, keys[role])
    home = client.get("/console").text
    shown = set(re.findall(r'<li><a href="/console/[^"]+"[^>]*>([^<]+)</a></li>', home))
    assert shown == NAV[role]
    for path, capability in PAGES.items():
        r = client.get(path)
        if role in ALLOWED[capability]:
            assert r.status_code == 200, (path, r.text[:300])
        else:
            assert r.status_code == 403 and "may not use this page" in r.text, path


def test_revoked_key_signs_the_session_out(client, keys, session_factory):
    sign_in(client, keys["marketer"])
    assert client.get("/console/campaigns").status_code == 200
    with transaction(session_factory) as s:
        from commerce.access import ApiKey
        from commerce.services.access import hash_key

        key_id = s.query(ApiKey.id).filter(ApiKey.key_hash == hash_key(keys["marketer"])).scalar()
        revoke_api_key(s, key_id)
    assert client.get("/console/campaigns", follow_redirects=False).status_code == 303


def test_console_coupon_edit_is_refused_once_granted(client, keys, session_factory):
    token = sign_in(client, keys["marketer"])
    form = {"csrf_token": token, "kind": "amount_off", "value": "60", "min_spend": "0", "scope": "platform"}
    refused = client.post("/console/coupons/c-vip", data=form)  # c-vip is granted to s2 by the seed
    assert refused.status_code == 409 and "granted or used" in refused.text
    with transaction(session_factory) as s:
        assert s.get(Coupon, "c-vip").value == 50
    ok = client.post(
        "/console/coupons/c-10off", data={**form, "kind": "percent_off", "value": "15", "cap": "20"}
    )
    assert ok.status_code == 200 and "15" in ok.text
    with transaction(session_factory) as s:
        assert (s.get(Coupon, "c-10off").kind, float(s.get(Coupon, "c-10off").value)) == ("percent_off", 0.15)


def test_experiment_detail_reads_exposures_and_outcomes(client, keys, session_factory):
    from datetime import UTC, datetime

    from commerce.services.shoppers import create_shopper

    with transaction(session_factory) as s:
        for i in range(40):
            create_shopper(s, f"x{i:02d}", "Shanghai")
    token = sign_in(client, keys["data_scientist"])
    form = {"csrf_token": token, "name": "ui-exp", "primary_metric": "conversion", "planned_units": "15",
            "variant0_name": "control", "variant0_weight": "1", "variant1_name": "treatment",
            "variant1_weight": "1", "variant1_alias": "challenger"}  # fmt: skip
    made = client.post("/console/experiments/new", data=form, follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/console/experiments/ui-exp"
    assert "No exposures logged yet" in client.get("/console/experiments/ui-exp").text
    started = client.post("/console/experiments/ui-exp/start", data={"csrf_token": token})
    assert 'id="experiment-status">running<' in started.text
    from commerce.services.experiments import record_exposure

    with transaction(session_factory) as s:  # chosen arms (the API logs only the assigned one)
        for i in range(40):
            assert record_exposure(s, "ui-exp", "control" if i % 2 else "treatment", f"x{i:02d}")
    now = datetime.now(UTC)  # after every first exposure
    purchases = [
        {"event_id": f"purchase:ui-{i}", "ts": now, "shopper_id": f"x{i:02d}", "event_type": "purchase",
         "product_id": "p01", "value": 99.5}
        for i in range(40) if i % 4 != 1  # treatment (even) buys more often than control (odd)
    ]  # fmt: skip
    # purchases are logged by the server's own order code, never posted by clients
    from commerce.services.events import record_events

    with transaction(session_factory) as s:
        assert record_events(s, purchases) == len(purchases)
    page = client.get("/console/experiments/ui-exp")
    assert page.status_code == 200, page.text[:500]
    assert "Sample-ratio check" in page.text and "(no mismatch)" in page.text
    assert re.search(r"<td>treatment</td><td>conversion</td><td>decision</td>", page.text)
    assert "guardrail" in page.text and 'id="experiment-chart"' in page.text
    assert re.search(r'id="decision"><strong>Decision:</strong> [A-Z]', page.text)
    assert "20 of 15" in page.text  # units per variant against the planned horizon


def test_merchant_shop_lists_its_orders_to_ship_and_sets_stock(client, keys, session_factory):
    from commerce.catalog import Stock

    token = sign_in(client, keys["merchant"])  # bound to m1; the seed's order 1 (paid) holds p01 and p03
    page = client.get("/console/shop")
    assert page.status_code == 200 and "Merchant <strong>m1</strong>" in page.text
    assert '<td><a href="/console/shop/orders/1">Order 1</a></td><td>paid</td>' in page.text
    assert "p01" in page.text and "p05" not in page.text  # only its own products
    r = client.post(
        "/console/shop/products/p02/stock", data={"csrf_token": token, "location": "ow1", "quantity": "9"}
    )  # p02 ships by direct mail: held overseas
    assert r.status_code == 200
    with transaction(session_factory) as s:
        stock = s.query(Stock).filter(Stock.product_id == "p02", Stock.location == "ow1").one()
        assert stock.quantity == 9
    other = client.post(
        "/console/shop/products/p05/stock", data={"csrf_token": token, "location": "wh1", "quantity": "0"}
    )
    assert other.status_code == 403 and "own merchant" in other.text  # the API's ownership check, its 403


@pytest.mark.parametrize(
    ("role", "path", "form"),
    [
        ("data_scientist", "/console/models/crosscart-recommender/promote", {"version": "1"}),
        ("marketer", "/console/keys", {"role": "admin"}),
        ("marketer", "/console/merchants/m3/review", {"decision": "approve"}),
        ("merchant", "/console/coupons/new", {"kind": "amount_off", "value": "5"}),
        ("data_scientist", "/console/campaigns/new", {"name": "x"}),
        ("storefront", "/console/experiments/new", {"name": "x"}),
    ],
)
def test_actions_are_refused_to_roles_without_them(client, keys, session_factory, role, path, form):
    from commerce.merchants import Merchant

    token = sign_in(client, keys[role])
    r = client.post(path, data={**form, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403 and "may not use this page" in r.text
    with transaction(session_factory) as s:
        assert s.get(Merchant, "m3").status == "pending"


@pytest.mark.parametrize(
    ("inference", "planned", "verdict"),
    [
        ("fixed", "100", "not yet conclusive: fixed horizon not reached"),
        ("msprt", "", None),
        ("group-sequential", "100", "significant increase at look 1"),
    ],
)
def test_experiment_page_names_the_inference_in_force(
    client, keys, session_factory, inference, planned, verdict
):
    """The results say which inference governs them, and a fixed horizon calls nothing early even when
    the naive p-value is tiny (treatment buys 100%, control 0%); the sequential methods may."""
    from datetime import UTC, datetime

    from commerce.services.events import record_events
    from commerce.services.shoppers import create_shopper

    with transaction(session_factory) as s:
        for i in range(40):
            create_shopper(s, f"y{i:02d}", "Shanghai")
    token = sign_in(client, keys["data_scientist"])
    new = client.get("/console/experiments/new").text
    assert '<select id="inference" name="inference">' in new and 'value="group-sequential"' in new
    form = {"csrf_token": token, "name": "inf-exp", "primary_metric": "conversion", "planned_units": planned,
            "inference": inference, "variant0_name": "control", "variant0_weight": "1",
            "variant1_name": "treatment", "variant1_weight": "1"}  # fmt: skip
    assert client.post("/console/experiments/new", data=form, follow_redirects=False).status_code == 303
    client.post("/console/experiments/inf-exp/start", data={"csrf_token": token})
    from commerce.services.experiments import record_exposure

    with transaction(session_factory) as s:  # chosen arms (the API logs only the assigned one)
        for i in range(40):
            assert record_exposure(s, "inf-exp", "treatment" if i % 2 == 0 else "control", f"y{i:02d}")
    now = datetime.now(UTC)
    with transaction(session_factory) as s:
        record_events(
            s,
            [
                {
                    "event_id": f"purchase:inf-{i}",
                    "ts": now,
                    "shopper_id": f"y{i:02d}",
                    "event_type": "purchase",
                    "product_id": "p01",
                    "value": 10.0,
                }
                for i in range(0, 40, 2)
            ],  # fmt: skip
        )
    page = client.get("/console/experiments/inf-exp").text
    from serving.console.science import INFERENCE_METHODS

    label = INFERENCE_METHODS[inference]
    assert f'id="experiment-inference">{label}</dd>' in page.replace("&#39;", "'")
    m = re.search(r'id="inference-in-force"><strong>Inference in force:</strong> (.*?)</p>', page, re.S)
    assert m and label in m.group(1).replace("&#39;", "'")
    shown = re.search(r'id="sequential-verdict">([^<]*)<', page).group(1)
    if verdict is not None:
        assert shown.startswith(verdict)
    else:  # mSPRT: 20 of 20 against 0 of 20 is decisive at once
        assert shown == "significant increase at look 1" and "always-valid p = " in m.group(1)
    if inference == "fixed":
        assert "p = " not in m.group(1)  # no naive p-value before the horizon
        assert "Keep running" in page  # and the decision waits


def test_api_problems_under_the_console_are_pages_not_json(client, keys):
    """An unknown address, a malformed query and an unknown id were answered with the API's problem JSON;
    a person gets the console's error page, with the same status, and the API keeps its JSON."""
    sign_in(client, keys["merchant"])
    for path, status, message in (
        ("/console/no-such-page", 404, "There is no console page at /console/no-such-page."),
        ("/console/keyword-campaigns?offset=-1", 422, "greater than or equal to 0"),
        ("/console/keyword-campaigns/kc_missing", 404, "unknown keyword campaign"),
    ):
        r = client.get(path)
        assert r.status_code == status, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert "<h1>" in r.text and message in r.text and "Back to the console" in r.text, r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    api = client.get(
        "/v1/keyword-campaigns/kc_missing", headers={"Authorization": f"Bearer {keys['merchant']}"}
    )
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"
    static = client.get("/console/static/no-such-file.css")
    assert static.status_code == 404 and not static.headers["content-type"].startswith("text/html")


def test_an_admin_revokes_a_key_and_its_console_session_ends(client, keys, make_client):
    """Revoke called the API's function without its background tasks: every console revoke was a 500."""
    other = make_client()
    sign_in(other, keys["data_scientist"])
    assert other.get("/console/experiments").status_code == 200
    token = sign_in(client, keys["admin"])
    page = client.get("/console/keys").text
    key_id = re.search(r'id="revoke-(\d+)"[^>]*data-confirm="Revoke key \d+ \(data_scientist\)', page)
    assert key_id, page
    r = client.post(
        f"/console/keys/{key_id.group(1)}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/keys"
    assert f'id="revoke-{key_id.group(1)}"' not in client.get("/console/keys").text
    assert other.get("/console/experiments", follow_redirects=False).status_code == 303  # to sign-in


def test_a_merchant_chooses_its_logistics_partner_on_its_shop_page(client, keys, session_factory):
    """The shipping rule (`PUT /v1/merchants/{id}/shipping-rule`) had no console page: a merchant could not
    choose who ships its orders. A refused rule keeps what was typed."""
    from commerce.services.logistics import seed_default_partners

    with transaction(session_factory) as s:
        seed_default_partners(s)
    token = sign_in(client, keys["merchant"])
    page = client.get("/console/shop").text
    assert "No rule set: orders ship with the fastest partner" in page
    r = client.post(
        "/console/shop/shipping-rule",
        data={"csrf_token": token, "partner_id": "sf-bonded"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/shop"
    assert "Orders ship with <strong>SF Express Bonded</strong>" in client.get("/console/shop").text
    r = client.post(
        "/console/shop/shipping-rule", data={"csrf_token": token, "max_days": "4"}, follow_redirects=False
    )
    assert "cheapest partner that arrives within <strong>4 days</strong>" in client.get("/console/shop").text
    bad = client.post("/console/shop/shipping-rule", data={"csrf_token": token, "max_days": "99"})
    assert bad.status_code == 422 and 'id="rule-error"' in bad.text and "less than or equal to 60" in bad.text
    assert 'name="max_days" type="number" min="1" max="60" value="99"' in bad.text  # the input is kept
    api = client.get(
        "/v1/merchants/m1/shipping-rule", headers={"Authorization": f"Bearer {keys['merchant']}"}
    )
    assert api.json()["max_days"] == 4 and api.json()["partner_id"] is None  # the refused one changed nothing


def test_signing_in_again_ends_the_session_it_replaces(make_client, settings, keys):
    """A browser signed in as one key that signs in with another (or the same) key gets a new session;
    the one its cookie held ends, as signing out would end it: a copy of the old cookie (an admin's, on
    a shared computer a shopper then signed in on) was valid for the rest of its hours."""
    client = make_client(settings=settings)
    token = sign_in(client, keys["admin"])
    copied = client.cookies[COOKIE]
    r = client.post(
        "/console/sign-in",
        data={"api_key": keys["marketer"], "csrf_token": token, "next": "/console"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert client.get("/console/campaigns").status_code == 200  # the new session works
    client.cookies.clear()
    client.cookies.set(COOKIE, copied, path="/console")
    assert _refused(client)
