"""The console's keyword-campaign pages over HTTP on SQLite and PostgreSQL: a merchant creates a campaign
(form validation through the API's schemas and rules), its ads serve and a click is charged, the page
reports it; pause, resume, budget, bids, keywords; a merchant reaches only its own campaigns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from commerce.ads import KeywordCampaign
from commerce.db import transaction
from commerce.identity import Keyring
from commerce.services import orders, shoppers
from commerce.services.checkout import CartLine, checkout
from tests.commerce.conftest import IDENTITY_KEY, make_id_number
from tests.search.test_api import _campaign
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in

BASE = "/console/keyword-campaigns"


def figure(page: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}">([^<]*)<', page).group(1)


def new_campaign_form(token: str, **overrides) -> dict:
    form = {
        "csrf_token": token,
        "name": "cream week",
        "daily_budget": "1.00",
        "product_ids": ["P1", "P4"],
        "keyword_0": "面霜",
        "match_0": "broad",
        "bid_0": "0.80",
        "keyword_1": "Karimi",
        "match_1": "exact",
        "bid_1": "0.50",
    }
    return {**form, **overrides}


def test_merchant_creates_a_campaign_its_ad_is_clicked_and_the_page_reports_it(api, keys, shop):
    token = sign_in(api, keys["m1"])
    assert "No keyword campaigns yet" in api.get(BASE).text
    new = api.get(f"{BASE}/new").text
    offered = set(re.findall(r'name="product_ids" type="checkbox" value="([^"]+)"', new))
    assert offered == {"P1", "P2", "P4"}  # its own products approved for sale, not M2's P3

    assert api.post(f"{BASE}/new", data=new_campaign_form("forged")).status_code == 403
    refused = {
        "another merchant's product": ({"product_ids": ["P3"]}, "not this merchant&#39;s sellable products"),
        "no product": ({"product_ids": []}, "Product ids"),
        "zero bid": ({"bid_0": "0"}, "bid"),
        "unknown match type": ({"match_1": "fuzzy"}, "Match type must be"),
        "no budget": ({"daily_budget": ""}, "daily_budget"),
    }
    for case, (change, message) in refused.items():
        r = api.post(f"{BASE}/new", data=new_campaign_form(token, **change))
        assert r.status_code == 422 and message in r.text, case
        assert 'value="cream week"' in r.text  # the form comes back filled in
    with shop() as s:
        assert s.query(KeywordCampaign).count() == 0

    made = api.post(f"{BASE}/new", data=new_campaign_form(token), follow_redirects=False)
    assert made.status_code == 303
    cid = made.headers["location"].rsplit("/", 1)[1]
    via_api = api.get(f"/v1/keyword-campaigns/{cid}", headers=auth(keys["m1"])).json()
    assert via_api["product_ids"] == ["P1", "P4"] and via_api["daily_budget"] == "1.00"
    assert [(k["keyword"], k["match_type"], k["bid"]) for k in via_api["keywords"]] == [
        ("面霜", "broad", "0.80"),
        ("karimi", "exact", "0.50"),
    ]

    # the campaign serves at once; one click is charged the reserve and bought within 7 days
    body = api.get(
        "/v1/search", params={"q": "保湿面霜", "shopper_id": "s1"}, headers=auth(keys["shopper"])
    ).json()
    assert [a["product_id"] for a in body["sponsored"]] == ["P1"]
    click = {"token": body["sponsored"][0]["impression_token"]}
    assert api.post("/v1/search/clicks", json=click, headers=auth(keys["storefront"])).json()["charged"]
    api.app.state.search.impressions.flush()
    with transaction(shop) as s:
        shoppers.register_identity(s, "s1", "Shopper 1", make_id_number(1), keyring=Keyring(IDENTITY_KEY))
        order = checkout(s, "s1", [CartLine("P1", 1)])
        orders.pay_order(s, order.order_id, "pay-console")
        total = order.total

    page = api.get(f"{BASE}/{cid}").text
    assert figure(page, "campaign-status") == "active" and figure(page, "spent-today") == "0.30"
    assert (figure(page, "report-impressions"), figure(page, "report-clicks")) == ("1", "1")
    assert (figure(page, "report-ctr"), figure(page, "report-spend")) == ("100.00%", "0.30")
    assert figure(page, "report-orders") == "1"
    assert figure(page, "report-revenue") == f"{total:,.2f}"
    assert figure(page, "report-roas") == f"{float(total) / 0.30:,.2f}"
    listed = api.get(BASE).text
    assert "cream week" in listed and cid in listed and "0.30" in listed
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    before = api.get(f"{BASE}/{cid}", params={"start": yesterday, "end": yesterday}).text
    assert figure(before, "report-clicks") == "0" and figure(before, "report-roas") == "no spend"
    assert "Dates must look like" in api.get(f"{BASE}/{cid}", params={"start": "june"}).text

    # a budget that covers the bid again, pause and resume: the auction follows at once
    def post(path: str, **data):
        return api.post(f"{BASE}/{cid}{path}", data={"csrf_token": token, **data}, follow_redirects=False)

    assert api.get("/v1/search", params={"q": "面霜"}).json()["sponsored"] == []  # 0.70 left < 0.80 bid
    assert post("", daily_budget="5.00").status_code == 303
    bad = post("", daily_budget="-1")
    assert bad.status_code == 422 and "daily_budget" in bad.text
    assert api.get("/v1/search", params={"q": "面霜"}).json()["sponsored"] != []
    assert post("", status="paused").status_code == 303
    assert figure(api.get(f"{BASE}/{cid}").text, "campaign-status") == "paused"
    assert api.get("/v1/search", params={"q": "面霜"}).json()["sponsored"] == []
    assert post("", status="active").status_code == 303
    assert api.get("/v1/search", params={"q": "面霜"}).json()["sponsored"] != []

    # bids and keywords
    kid = via_api["keywords"][0]["keyword_id"]
    assert post(f"/keywords/{kid}", bid="1.25").status_code == 303
    assert post(f"/keywords/{kid}", status="paused").status_code == 303
    assert post("/keywords", keyword="Face Cream", match_type="phrase", bid="0.60").status_code == 303
    duplicate = post("/keywords", keyword="face  cream", match_type="phrase", bid="0.70")
    assert duplicate.status_code == 409 and "already in the campaign" in duplicate.text
    assert post("/keywords/999999", bid="1.00").status_code == 404
    after = api.get(f"/v1/keyword-campaigns/{cid}", headers=auth(keys["m1"])).json()
    assert after["daily_budget"] == "5.00"
    assert [(k["keyword"], k["bid"], k["status"]) for k in after["keywords"]] == [
        ("面霜", "1.25", "paused"),
        ("karimi", "0.50", "active"),
        ("face cream", "0.60", "active"),
    ]
    page = api.get(f"{BASE}/{cid}").text
    assert figure(page, "campaign-budget") == "5.00" and figure(page, f"keyword-status-{kid}") == "paused"

    # an ended campaign cannot restart (the API's rule, shown on the page)
    assert post("", status="ended").status_code == 303
    restart = post("", status="active")
    assert restart.status_code == 422 and "cannot restart" in restart.text
    assert 'id="pause-campaign"' not in restart.text and 'id="add-keyword"' not in restart.text


def test_a_merchant_reaches_only_its_own_keyword_campaigns(api, keys, shop):
    cid = _campaign(api, keys["m1"]).json()["campaign_id"]
    kid = api.get(f"/v1/keyword-campaigns/{cid}", headers=auth(keys["m1"])).json()["keywords"][0][
        "keyword_id"
    ]
    token = sign_in(api, keys["m2"])
    listed = api.get(BASE, params={"merchant": "M1"}).text  # ?merchant= is for admins only
    assert "Merchant <strong>M2</strong>" in listed and cid not in listed
    new = api.get(f"{BASE}/new", params={"merchant": "M1"}).text
    assert set(re.findall(r'name="product_ids" type="checkbox" value="([^"]+)"', new)) == {"P3", "P5", "P7"}
    for path in (f"{BASE}/{cid}", f"{BASE}/{cid}?start=2026-01-01"):
        r = api.get(path)
        assert r.status_code == 403 and "reaches only its own merchant" in r.text
    for path, data in (
        ("", {"status": "paused"}),
        ("", {"daily_budget": "100.00"}),
        ("/keywords", {"keyword": "hijack", "match_type": "broad", "bid": "9.00"}),
        (f"/keywords/{kid}", {"bid": "0.31"}),
    ):
        r = api.post(f"{BASE}/{cid}{path}", data={"csrf_token": token, **data})
        assert r.status_code == 403, path
    # the merchant_id field cannot place a campaign in another merchant's name
    r = api.post(f"{BASE}/new", data=new_campaign_form(token, merchant_id="M1"), follow_redirects=False)
    assert r.status_code == 422 and "not this merchant&#39;s sellable products" in r.text
    after = api.get(f"/v1/keyword-campaigns/{cid}", headers=auth(keys["m1"])).json()
    assert (after["status"], after["daily_budget"], len(after["keywords"])) == ("active", "1.00", 1)
    assert Decimal(after["keywords"][0]["bid"]) == Decimal("0.80")
    assert api.get(f"{BASE}/kc_missing").status_code == 404

    # an admin picks the merchant; shoppers and storefronts may not use the page
    token = sign_in(api, keys["admin"])
    assert 'name="merchant"' in api.get(BASE).text
    assert cid in api.get(BASE, params={"merchant": "M1"}).text
    r = api.post(f"{BASE}/{cid}", data={"csrf_token": token, "status": "paused"}, follow_redirects=False)
    assert r.status_code == 303
    assert 'href="/console/keyword-campaigns?merchant=M1"' in api.get(f"{BASE}/{cid}").text
    for role in ("shopper", "storefront"):
        sign_in(api, keys[role])
        r = api.get(BASE)
        assert r.status_code == 403 and "may not use this page" in r.text
    api.cookies.clear()
    assert api.get(BASE, follow_redirects=False).headers["location"].startswith("/console/sign-in")


def test_spent_today_around_midnight_is_the_day_billing_charges(api, keys, shop, monkeypatch):
    """A replica whose clock ran past midnight before the database server's (an NTP step, a resumed VM):
    billing charged its click to the server's day (`ads.billing_clock`), but the console's "spent today"
    read this replica's clock and showed the new day's 0.00 (PostgreSQL; SQLite has the one clock).
    Both now read the billing clock."""
    from sqlalchemy import select

    from commerce.ads import AdBudgetDay
    from commerce.services import ads
    from commerce.sqltypes import utcnow
    from tests.search.test_ads import _claim

    made = _campaign(api, keys["m1"], budget="5.00").json()
    cid, kid = made["campaign_id"], made["keywords"][0]["keyword_id"]
    jumped = (utcnow() + timedelta(days=1)).replace(hour=0, minute=0, second=1)  # just past midnight
    monkeypatch.setattr(ads, "utcnow", lambda: jumped)  # this replica's clock, for billing and console
    with transaction(shop) as s:
        assert ads.charge_click(s, _claim(cid, kid, now=jumped)).charged
    with shop() as s:
        (billed,) = s.execute(select(AdBudgetDay.day, AdBudgetDay.spent)).all()
    sign_in(api, keys["m1"])
    page, listed = api.get(f"{BASE}/{cid}").text, api.get(BASE).text
    assert f"{billed.spent:.2f}" == figure(page, "spent-today") == figure(listed, f"spent-{cid}") == "0.70"
    assert figure(listed, "billing-day") == billed.day and f"billing day {billed.day}" in page


def test_the_merchant_pages_name_the_store_and_the_promoted_products(api, keys, shop):
    """Shipments, Keyword ads, a new keyword campaign and a campaign's page said "merchant M1" where My
    shop names the store, and the campaign page listed its promoted products as bare ids ("P1")."""
    from commerce.catalog import Product
    from commerce.merchants import Merchant

    with transaction(shop) as s:
        s.get(Merchant, "M1").name = "Karimi Global Store"
    token = sign_in(api, keys["m1"])
    named = '<strong>Karimi Global Store</strong> <span class="note">M1</span>'
    for path in ("/console/shop/orders", BASE, f"{BASE}/new"):
        assert named in api.get(path).text, path
    made = api.post(f"{BASE}/new", data=new_campaign_form(token), follow_redirects=False)
    page = api.get(made.headers["location"]).text
    assert named in page
    promoted = page.split("Promoted products", 1)[1].split("</ul>", 1)[0]
    with transaction(shop) as s:
        title = s.get(Product, "P1").title
    assert f'<li>{title} <span class="note">P1</span></li>' in promoted
