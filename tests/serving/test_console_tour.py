"""What a first-time user of the console tripped over (session 21's tour in Chromium), over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from commerce.db import transaction
from commerce.merchants import BrandAuthorization, Merchant
from tests.serving.test_console import CSRF, sign_in


def test_recently_decided_merchants_are_the_latest_decisions_first(client, keys, session_factory):
    """ "Recently decided" read the first 100 merchants by id in id order: a decision just taken on a
    merchant past the hundredth never showed, and a years-old approval came before yesterday's."""
    now = datetime.now(UTC)
    with transaction(session_factory) as s:
        s.add_all(
            Merchant(
                merchant_id=f"z{i:03d}",
                name=f"Shop {i:03d}",
                country="JP",
                licence_no=f"Z-{i}",
                status="approved",
                reviewed_at=now - timedelta(days=1000 - i),
                brands=[BrandAuthorization(brand="B")],
            )  # fmt: skip
            for i in range(120)
        )
    sign_in(client, keys["admin"])
    page = client.get("/console/merchants")
    token = CSRF.search(page.text).group(1)
    approved = client.post(
        "/console/merchants/m3/review",
        data={"decision": "approve", "csrf_token": token},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    recent = client.get("/console/merchants").text.split("Recently decided", 1)[1]
    shown = re.findall(r'id="status-([^"]+)"', recent)
    assert shown[:3] == ["m3", "z119", "z118"] and len(shown) == 20


def _report(**figures):
    from serving.schemas.marketing import CampaignReport

    base = dict(
        n_treated=117, n_holdout=13, conversion_rate_treated=0.0342, conversion_rate_holdout=0.0154,
        incremental_conversion_rate=0.0188, incremental_conversion_rate_ci=(-0.0124, 0.05),
        incremental_conversions=2.2, incremental_revenue_per_shopper=3.1,
        incremental_revenue_per_shopper_ci=(-1.0, 7.0), incremental_revenue=362.0,
        incremental_revenue_ci=(-120.0, 840.0), cost=80.0, roi=0.36, roi_ci=(-0.5, 1.2), confidence=0.95,
    )  # fmt: skip
    return CampaignReport(**{**base, **figures})


def test_the_measurement_report_reads_rates_as_percentages():
    """The report printed rates as bare fractions ("0.0000 / 0.0000", an interval "-0.2281 to 0.0318")
    and an ROI without coupon cost as "undefined undefined to undefined": 0.0188 read as 0.0188%."""
    from serving.console.campaigns import report_chart
    from serving.console.web import templates

    page = templates.get_template("_report.html").render(report=_report(), report_chart="")
    assert "3.42% / 1.54%" in page
    assert "+1.88 pp" in page and "-1.24 pp to +5.00 pp" in page
    assert "0.0188" not in page
    costless = _report(cost=0.0, roi=None, roi_ci=(None, None))
    page = templates.get_template("_report.html").render(report=costless, report_chart="")
    assert "undefined" not in page and "no coupon was redeemed" in page
    chart = str(report_chart(_report()))
    assert "incremental conversion rate (pp)" in chart and ">-1.24<" in chart  # the interval's ends


def test_a_variant_naming_an_alias_the_registry_lacks_is_flagged(client, keys, monkeypatch):
    """The new-experiment form suggests `challenger`, which the demo's registry does not have: serving
    then gives that variant the champion, and the page showed "challenger" as if it were served, an A/A
    test read as a model comparison."""
    from types import SimpleNamespace

    from serving.routers import models as models_api

    versions = [SimpleNamespace(aliases=("champion",)), SimpleNamespace(aliases=("candidate",))]
    monkeypatch.setattr(models_api.registry_cache, "versions", lambda uri, name: versions)
    token = sign_in(client, keys["data_scientist"])
    for name, alias in (("aa-by-mistake", "challenger"), ("real-ab", "candidate")):
        form = {"csrf_token": token, "name": name, "primary_metric": "conversion", "variant0_name": "control",
                "variant0_weight": "1", "variant1_name": "treatment", "variant1_weight": "1",
                "variant1_alias": alias}  # fmt: skip
        assert client.post("/console/experiments/new", data=form, follow_redirects=False).status_code == 303
    flagged = client.get("/console/experiments/aa-by-mistake").text
    assert 'id="unknown-aliases"' in flagged and "no recommender alias challenger" in flagged
    assert 'challenger <strong class="error">not in the registry</strong>' in flagged
    assert 'id="unknown-aliases"' not in client.get("/console/experiments/real-ab").text

    def down(uri, name):
        raise OSError("registry unreachable")

    monkeypatch.setattr(models_api.registry_cache, "versions", down)
    page = client.get("/console/experiments/aa-by-mistake")
    assert page.status_code == 200 and 'id="unknown-aliases"' not in page.text


def test_the_coupon_list_names_and_links_each_coupons_campaign(client, keys):
    """The Coupons list's Campaign column was the bare id ("cmp_7a71f1b94557422b"), not a link."""
    token = sign_in(client, keys["marketer"])
    form = {"csrf_token": token, "name": "Spring <sale>", "channel": "site", "budget": "500",
            "control_share": "0.1", "starts_at": "2030-03-01T00:00", "ends_at": "2030-03-10T00:00",
            "kind": "amount_off", "value": "20", "min_spend": "99", "scope": "platform",
            "per_shopper_limit": "1"}  # fmt: skip
    made = client.post("/console/campaigns/new", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    path = made.headers["location"]
    listed = client.get("/console/coupons").text
    assert f'<a href="{path}">Spring &lt;sale&gt;</a>' in listed


def test_set_stock_offers_the_known_locations(client, keys):
    """Set stock's location was free text: a typo ("bonded-defualt") silently became a new location of the
    merchant's own holding the units. It now offers the locations the new-product form offers, and says
    what a name outside them does."""
    sign_in(client, keys["merchant"])
    shop = client.get("/console/shop").text
    stock_inputs = re.findall(r'<input id="loc-[^"]+"[^>]*>', shop)
    assert stock_inputs and all('list="np-warehouses"' in i for i in stock_inputs)
    assert '<datalist id="np-warehouses">' in shop and "becomes a new location of your own" in shop


def test_a_schema_refusal_reads_as_words_not_pydantic(client, keys):
    """A refusal by the API's schemas read as pydantic prints it: "variants.1.weight: Input should be
    greater than 0", "quantity: Input should be greater than or equal to 0"."""
    token = sign_in(client, keys["data_scientist"])
    form = {"csrf_token": token, "name": "neg-weight", "primary_metric": "conversion",
            "variant0_name": "control", "variant0_weight": "1", "variant1_name": "treatment",
            "variant1_weight": "-1"}  # fmt: skip
    refused = client.post("/console/experiments/new", data=form)
    assert refused.status_code == 422 and "Variant 2 weight must be greater than 0" in refused.text
    assert "Input should be" not in refused.text and "variants.1" not in refused.text
    token = sign_in(client, keys["merchant"])
    refused = client.post("/console/shop/products/p01/stock", data={"csrf_token": token, "location": "wh1",
                                                                    "quantity": "-5"})  # fmt: skip
    assert refused.status_code == 422 and "Quantity must be greater than or equal to 0" in refused.text


def test_the_plan_form_offers_the_regions_and_segments_shoppers_have(client, keys, session_factory):
    """Region and segment were empty text boxes: a marketer guessed ("beauty_enthusiast"? "Shanghai"?)
    and learnt only from the refusal that nobody matched."""
    from commerce.shoppers import Shopper

    with transaction(session_factory) as s:
        s.get(Shopper, "s1").segment = "young_parent"
        s.add(Shopper(shopper_id="s9", region="west", segment="beauty_enthusiast"))
    token = sign_in(client, keys["marketer"])
    form = {"csrf_token": token, "name": "Offered", "channel": "site", "budget": "500",
            "control_share": "0.1", "starts_at": "2030-03-01T00:00", "ends_at": "2030-03-10T00:00",
            "kind": "amount_off", "value": "20", "min_spend": "99", "scope": "platform",
            "per_shopper_limit": "1"}  # fmt: skip
    draft = client.get(
        client.post("/console/campaigns/new", data=form, follow_redirects=False).headers["location"]
    )

    def offered(name: str) -> str:
        return re.search(rf'<datalist id="{name}-choices">(.*?)</datalist>', draft.text).group(1)

    assert 'list="region-choices"' in draft.text and 'list="segment-choices"' in draft.text
    assert offered("region") == '<option value="east"><option value="west">'
    assert offered("segment") == '<option value="beauty_enthusiast"><option value="young_parent">'


def test_the_admins_merchant_picker_offers_the_merchants_by_name(client, keys, session_factory):
    """My shop, Shipments and Keyword ads asked an admin for a merchant id to type, and no page but the
    review queue showed one."""
    with transaction(session_factory) as s:
        s.get(Merchant, "m2").name = "Sakura Global Store"
    sign_in(client, keys["admin"])
    for path in ("/console/shop", "/console/shop/orders", "/console/keyword-campaigns"):
        page = client.get(path).text
        assert 'list="merchant-choices"' in page, path
        assert '<option value="m2">Sakura Global Store (approved)</option>' in page, path
