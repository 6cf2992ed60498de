"""Every lookup by a chosen id or name reads it in the form it is stored in (`lookup_name`): a coupon id
or an experiment name typed full width (what a Chinese input method types), with another dash or an
outer space, finds the one stored. Before, each of these was a 404 (a variant a 422), while creating the
same look-alike was refused as a duplicate."""

from __future__ import annotations

from decimal import Decimal

from commerce.db import transaction
from commerce.services.experiments import get_experiment
from experiments.ab.assignment import ExperimentSpec, assign
from tests.serving.conftest import auth, grant_only_campaign

_WIDE = {c: chr(ord(c) + 0xFEE0) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def wide(text: str) -> str:
    """`text` with its ASCII letters and digits full width (`ｃ-１０ｏｆｆ`)."""
    return text.translate(str.maketrans(_WIDE))


def test_checkout_takes_a_coupon_id_in_any_look_alike_form(client, keys):
    shopper = auth(keys["shopper"])
    cart = {"lines": [{"product_id": "p05", "quantity": 2}]}
    for typed in (wide("c-10off"), "c\u201010off", " c-10off\u3000"):  # U+2010 hyphen, ideographic space
        quote = client.post("/v1/shoppers/s1/cart/quote", json={**cart, "coupon_id": typed}, headers=shopper)
        assert quote.status_code == 200, (typed, quote.text)
        assert (quote.json()["coupon_id"], Decimal(quote.json()["discount_total"])) == ("c-10off", 10)
    order = client.post(
        "/v1/shoppers/s1/orders", json={**cart, "coupon_id": wide("c-10off")}, headers=shopper
    )
    assert order.status_code == 201, order.text
    assert order.json()["coupon_id"] == "c-10off"
    # the one coupon's use was taken: its one use per shopper is gone, whichever form is typed
    again = client.post("/v1/shoppers/s1/orders", json={**cart, "coupon_id": "c-10off"}, headers=shopper)
    assert (again.status_code, again.json()["code"]) == (422, "coupon_shopper_limit")
    used = client.get("/v1/coupons/c-10off", headers=auth(keys["marketer"])).json()
    assert used["used"] == 1


def test_a_granted_coupon_is_redeemed_in_a_look_alike_form(client, keys):
    """`c-vip` needs a grant (the seed gave it to s2): the grant is found for the typed form too."""
    cart = {"lines": [{"product_id": "p05", "quantity": 1}], "coupon_id": wide("C-VIP").lower()}
    assert cart["coupon_id"] == wide("c-vip")
    order = client.post("/v1/shoppers/s2/orders", json=cart, headers=auth(keys["shopper2"]))
    assert order.status_code == 201, order.text
    assert (order.json()["coupon_id"], Decimal(order.json()["discount_total"])) == ("c-vip", 50)


def test_coupon_admin_finds_a_coupon_by_a_look_alike_id(client, keys):
    h = auth(keys["marketer"])
    typed = wide("c-beauty20")
    got = client.get(f"/v1/coupons/{typed}", headers=h)
    assert (got.status_code, got.json()["coupon_id"]) == (200, "c-beauty20")
    edited = client.patch(f"/v1/coupons/{typed}", json={"name": "Beauty week"}, headers=h)
    assert (edited.status_code, edited.json()["name"]) == (200, "Beauty week")
    retired = client.post("/v1/coupons/c\u2011beauty20/retire", headers=h)  # a non-breaking hyphen
    assert retired.status_code == 200 and retired.json()["ends_at"] is not None
    assert client.get("/v1/coupons/c-beauty21", headers=h).status_code == 404  # another id stays unknown


def test_a_campaign_plan_names_its_coupon_in_a_look_alike_form(client, keys, session_factory):
    marketer = auth(keys["marketer"])
    cid = grant_only_campaign(client, marketer, session_factory, "Wide", "CAMP-7")
    candidates = [
        {"shopper_id": f"s{i}", "coupon_id": wide("camp-7").upper(), "p_control": 0.1,
         "p_treated": 0.1 + i / 200, "spend_control": 150.0, "spend_treated": 160.0}
        for i in range(1, 41)
    ]  # fmt: skip
    plan = client.post(f"/v1/campaigns/{cid}/plan", json={"candidates": candidates}, headers=marketer)
    assert plan.status_code == 200, plan.text
    rows = client.get(f"/v1/campaigns/{cid}/audience.csv", headers=marketer).text.strip().splitlines()[1:]
    assert rows and {r.split(",")[2] for r in rows} <= {"CAMP-7", ""}
    assert any(r.split(",")[2] == "CAMP-7" for r in rows)


def test_experiments_and_variants_are_found_by_look_alike_names(client, keys, session_factory):
    marketer, storefront = auth(keys["marketer"]), auth(keys["storefront"])
    body = {"name": "promo-7", "variants": [{"name": "left", "weight": 1}, {"name": "right", "weight": 1}]}
    assert client.post("/v1/experiments", json=body, headers=marketer).status_code == 201
    typed = wide("promo") + "\u2013" + wide("7")  # an en dash
    got = client.get(f"/v1/experiments/{typed}", headers=marketer)
    assert (got.status_code, got.json()["name"]) == (200, "promo-7")
    assert client.post(f"/v1/experiments/{typed}/start", headers=marketer).json()["status"] == "running"
    with transaction(session_factory) as s:
        spec = ExperimentSpec.from_config(get_experiment(s, "promo-7").as_config())
    units = {f"crowd-{k}": assign(spec, f"crowd-{k}") for k in range(10)}
    for unit, variant in units.items():  # the variant typed full width too
        body = {"unit_id": unit, "variant": wide(variant)}
        logged = client.post(f"/v1/experiments/{typed}/exposures", json=body, headers=storefront)
        assert logged.json() == {"first_exposure": True}, logged.text
    summary = client.get(f"/v1/experiments/{typed}/exposures", headers=marketer).json()
    assert summary["experiment"] == "promo-7"
    assert summary["counts"] == {v: list(units.values()).count(v) for v in ("left", "right")}
    results = client.get(f"/v1/experiments/{typed}/results", headers=marketer)
    assert results.status_code == 200, results.text
    assert results.json()["experiment"] == "promo-7"
    assert client.post(f"/v1/experiments/{typed}/stop", headers=marketer).json()["status"] == "stopped"
