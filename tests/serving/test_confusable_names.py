"""A chosen name spelt wholly in another script's look-alike letters is refused beside the existing name it
looks like (Unicode's skeletons, UTS #39): `unmixed` reads one word at a time, so Cyrillic `РАУ` passed
beside `PAY`, `ѕаѵе` beside `save`. A genuine Chinese, Cyrillic or Greek name that looks like no stored
one passes."""

from __future__ import annotations

import pytest

from commerce.errors import ValidationError
from commerce.services._util import not_confusable, skeleton
from tests.serving.conftest import auth


def _coupon(client, keys, coupon_id: str):
    body = {"coupon_id": coupon_id, "kind": "amount_off", "value": "1", "min_spend": "0"}
    return client.post("/v1/coupons", json=body, headers=auth(keys["marketer"]))


def _problem(response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("code")


def test_a_coupon_id_in_whole_script_look_alikes_is_refused(client, keys):
    assert _coupon(client, keys, "PAY").status_code == 201
    assert _coupon(client, keys, "save").status_code == 201
    for fake in (
        "\u0420\u0410\u0423",
        "\u0455\u0430\u0475\u0435",
    ):  # РАУ; ѕаѵе (Cyrillic dze, a, izhitsa, ie)
        refused = _coupon(client, keys, fake)
        assert _problem(refused) == (422, "confusable_name"), refused.text
        assert "looks like the existing" in refused.json()["detail"]
    assert _problem(_coupon(client, keys, "c-l0off")) == (422, "confusable_name")  # `c-10off`: l for 1
    for genuine in ("\u0441\u043a\u0438\u0434\u043a\u0430", "\u6625\u8282-10", "pay"):  # скидка, 春节-10
        made = _coupon(client, keys, genuine)
        assert made.status_code == 201, (genuine, made.text)


def test_experiment_variant_and_layer_names_in_look_alikes_are_refused(client, keys):
    h = auth(keys["admin"])

    def experiment(name: str, variants=("a", "b"), **fields):
        body = {"name": name, "variants": [{"name": v, "weight": 1} for v in variants]} | fields
        return client.post("/v1/experiments", json=body, headers=h)

    assert experiment("promo", layer="home", traffic=0.5).status_code == 201
    assert experiment("cope").status_code == 201
    assert _problem(experiment("\u0441\u043e\u0440\u0435")) == (422, "confusable_name")  # соре, Cyrillic
    assert _problem(experiment("promo 2", variants=("a", "\u0430"))) == (422, "confusable_name")  # a, а
    look_alike_layer = experiment("promo 3", layer="\u04bb\u043em\u0435", traffic=0.5)  # һоmе
    assert _problem(look_alike_layer) == (422, "mixed_script")  # Cyrillic һ, о, е and a Latin m
    greek_layer = experiment("promo 3", layer="\u03bf\u03bd", traffic=0.5)  # Greek ον
    assert greek_layer.status_code == 201, greek_layer.text
    assert _problem(experiment("promo 4", layer="ov", traffic=0.5)) == (422, "confusable_name")
    made = experiment("\u041c\u043e\u0441\u043a\u0432\u0430", variants=("\u0430", "\u0431"))  # Москва: а, б
    assert made.status_code == 201, made.text
    assert _problem(experiment("Mocква")) == (422, "mixed_script")


def test_a_merchant_name_or_brand_in_look_alikes_is_refused(client):
    def apply(name: str, licence: str, brands=("Kiwi",)):
        body = {"name": name, "country": "NZ", "licence_no": licence, "brands": list(brands)}
        return client.post("/v1/merchants", json=body)

    assert apply("ACME", "NZ-1", brands=["ACME"]).status_code == 201
    refused = apply("\u0410\u0421\u041c\u0415", "NZ-2")  # АСМЕ
    assert _problem(refused) == (422, "confusable_name")
    # anyone may apply: the merchant it looks like is named to no applicant (its name, its brands)
    assert "ACME" not in refused.text and "another merchant's own name" in refused.json()["detail"]
    assert apply("ACME", "NZ-3").status_code == 201  # the same name: names are not unique, as before
    assert apply("\u0422\u0440\u0435\u0439\u0434", "NZ-4").status_code == 201  # Трейд
    # brands: the products of one authorized for a Cyrillic АСМЕ would pass for ACME's
    refused = apply("Reseller", "NZ-5", ["\u0410\u0421\u041c\u0415"])
    assert _problem(refused) == (422, "confusable_name") and "ACME" not in refused.text
    assert _problem(apply("Reseller", "NZ-6", ["TOP", "\u0422\u041e\u0420"])) == (422, "confusable_name")
    assert apply("Reseller", "NZ-7", ["ACME", "\u0422\u0440\u0435\u0439\u0434"]).status_code == 201


@pytest.mark.parametrize(
    ("one", "other"),
    [("PAY", "\u0420\u0410\u0423"), ("paypal", "\u0440\u0430\u0443\u0440\u0430l"), ("m", "rn"), ("O", "0")],
)
def test_look_alikes_share_a_skeleton(one, other):
    assert skeleton(one) == skeleton(other)
    with pytest.raises(ValidationError) as err:
        not_confusable(other, [one], "name")
    assert err.value.code == "confusable_name"
    assert not_confusable(one, [one], "name") == one  # the name itself is no collision
