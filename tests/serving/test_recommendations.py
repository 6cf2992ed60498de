"""Serving rules end to end through the API, on the tiny marketplace of conftest.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.serving.conftest import auth, scrape

NEVER = {"p09", "p10", "p11", "p12"}  # pending merchant, suspended merchant, delisted, out of stock


def recs(client, key, shopper="s1", **params):
    response = client.get(f"/v1/shoppers/{shopper}/recommendations", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_rules_model_order_and_metadata(client, keys):
    body = recs(client, keys["storefront"], n=20)
    ids = [i["product_id"] for i in body["items"]]
    assert not NEVER & set(ids)
    assert "p03" not in ids  # bought, toys are not repurchasable
    assert "p01" in ids  # bought, but beauty is repurchasable
    assert body["model"] == {
        "name": "tiny",
        "registered_name": "crosscart-recommender",
        "alias": "champion",
        "version": "1",
        "fallback": False,
        "fallback_reason": None,
        "alias_fallback_reason": None,
        "source": "online",
    }
    organic = [i for i in body["items"] if not i["sponsored"]]
    # the model's picks say whether the shopper bought them before
    assert {i["product_id"]: i["reason"] for i in organic}["p01"] == "tiny:repeat"
    assert all(i["reason"] == "tiny:new" for i in organic if i["product_id"] != "p01")
    assert [i["rank"] for i in body["items"]] == list(range(1, len(ids) + 1))
    for merchant in {i["merchant_id"] for i in body["items"]}:
        assert sum(i["merchant_id"] == merchant for i in body["items"]) <= 3
    for category in {i["category_id"] for i in body["items"]}:
        assert sum(i["category_id"] == category for i in body["items"]) <= 4
    assert body["items"][0]["price"] == "99.50"


def test_sponsored_only_at_fixed_flagged_position_when_relevant(client, keys):
    items = recs(client, keys["storefront"], n=5)["items"]
    assert len(items) == 5
    sponsored = [i for i in items if i["sponsored"]]
    assert [(i["rank"], i["product_id"], i["reason"]) for i in sponsored] == [(3, "p08", "sponsored")]
    # Only toys on the page and no beauty purchase: the beauty ad is not relevant to s2's toy-only page.
    toys = recs(client, keys["storefront"], shopper="s2", category="toys")["items"]
    assert not any(i["sponsored"] for i in toys)


def test_filters(client, keys):
    bonded = recs(client, keys["storefront"], fulfillment="bonded", n=20)["items"]
    assert bonded and all(i["fulfillment"] == "bonded" for i in bonded)
    beauty = recs(client, keys["storefront"], category="beauty", n=20)["items"]
    assert {i["category_id"] for i in beauty} == {"beauty"}
    everything = recs(client, keys["storefront"], category="root", n=20)["items"]
    assert {i["category_id"] for i in everything} == {"beauty", "toys"}


def test_unknown_shopper_gets_popularity(client, keys):
    items = recs(client, keys["storefront"], shopper="new-shopper", n=3)["items"]
    assert [i["product_id"] for i in items if not i["sponsored"]][:2] == ["p05", "p06"]
    assert all(i["reason"] in ("popularity", "sponsored") for i in items)


def test_product_context_uses_similar_items(client, keys):
    body = recs(client, keys["storefront"], shopper="s2", context="product", product_id="p05", n=5)
    ids = [i["product_id"] for i in body["items"]]
    assert ids[:2] == ["p06", "p02"]  # p09 is similar but its merchant is pending
    assert body["items"][0]["reason"] == "tiny:similar"
    assert "p05" not in ids
    bad = client.get(
        "/v1/shoppers/s2/recommendations", params={"context": "cart"}, headers=auth(keys["admin"])
    )
    assert bad.status_code == 422


def test_n_is_capped(client, keys):
    r = client.get("/v1/shoppers/s1/recommendations", params={"n": 101}, headers=auth(keys["storefront"]))
    assert r.status_code == 422


def test_similar_and_rankings(client, keys):
    similar = client.get("/v1/products/p05/similar", params={"n": 5}).json()
    assert [i["product_id"] for i in similar["items"]][:2] == ["p06", "p02"]
    assert client.get("/v1/products/nope/similar").status_code == 404
    ranking = client.get("/v1/rankings", params={"by": "sales", "window": "7d"}).json()
    # p09-p12 sold too but cannot be bought now; p01 and p03 are the seeded order's lines.
    assert [i["product_id"] for i in ranking["items"]] == ["p05", "p06", "p07", "p02", "p04", "p01", "p03"]
    assert ranking["items"][0]["value"] == 10.0
    all_time = client.get("/v1/rankings", params={"by": "sales", "window": "all"}).json()
    assert all_time["items"][0]["product_id"] == "p08"  # 60 units, long ago
    korean = client.get("/v1/rankings", params={"window": "7d", "origin": "KR"}).json()
    assert {i["origin_country"] for i in korean["items"]} == {"KR"}


def test_rankings_state_the_period_they_counted(client):
    """The default 7-day window's start, end and length are in the response, next to the keys clients
    already read; `all` has no start."""
    week = client.get("/v1/rankings").json()
    assert set(week) == {"by", "window", "items", "period"} and week["window"] == "7d"
    period = week["period"]
    start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
    assert period["days"] == 7 and end - start == timedelta(days=7)
    assert datetime.now(UTC) - timedelta(minutes=10) < end <= datetime.now(UTC)
    everything = client.get("/v1/rankings", params={"window": "all"}).json()["period"]
    assert everything["start"] is None and everything["days"] is None
    assert datetime.fromisoformat(everything["end"]) == end  # one snapshot: one end for every window


def test_fast_path_answers_like_the_route_and_leaves_the_rest_to_it(client, keys, monkeypatch):
    from serving import fastpath

    url, headers = "/v1/shoppers/s1/recommendations", auth(keys["storefront"])
    params = {"n": 5, "fulfillment": "bonded"}
    first = client.get(url, params=params, headers=headers)  # key not cached yet: FastAPI answers
    answered = []
    original = fastpath.RecommendationFastPath._answer
    monkeypatch.setattr(
        fastpath.RecommendationFastPath,
        "_answer",
        lambda self, *a: answered.append(original(self, *a)) or answered[-1],
    )
    second = client.get(url, params=params, headers=headers)
    assert answered[-1] is not None and second.json() == first.json()
    invalid = client.get(url, params={"n": 0}, headers=headers)
    assert answered[-1] is None and invalid.status_code == 422 and invalid.json()["code"] == "invalid_request"
    other = client.get("/v1/shoppers/s2/recommendations", headers=auth(keys["shopper"]))
    assert answered[-1] is None and other.status_code == 403  # throttled role and someone else: FastAPI
    metrics = scrape(client)
    assert 'route="/v1/shoppers/{shopper_id}/recommendations",status="200"} 2.0' in metrics


def buy_again(client, key, shopper="s2", **params):
    response = client.get(f"/v1/shoppers/{shopper}/buy-again", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_buy_again_route_lists_own_repurchasable_orders(client, keys):
    # s1's paid order holds p01 (beauty: repurchasable) and p03 (toys: not); s2 placed no order
    body = buy_again(client, keys["shopper"], shopper="s1")
    assert [(i["product_id"], i["reason"]) for i in body["items"]] == [("p01", "tiny:repeat")]
    assert body["model"]["name"] == "tiny" and body["shopper_id"] == "s1"
    assert buy_again(client, keys["storefront"], shopper="s1", fulfillment="direct_mail")["items"] == []
    assert buy_again(client, keys["storefront"], shopper="s2")["items"] == []


def test_buy_again_orders_by_model_score_then_popularity():
    import pandas as pd

    from serving.catalog import CatalogSnapshot
    from serving.model_store import ModelSnapshot
    from serving.recommend import buy_again as compose
    from tests.serving.conftest import TinyRecommender

    ids = [f"q{i}" for i in range(6)]
    products = pd.DataFrame(
        {"product_id": ids, "title": ids, "merchant_id": "m", "category_id": ["food"] * 5 + ["toys"],
         "origin_country": "JP", "price": "1.00", "fulfillment": "bonded", "sellable": True, "public": True}
    )  # fmt: skip
    categories = pd.DataFrame(
        {"category_id": ["food", "toys"], "parent_id": [None, None], "repurchasable": [True, False]}
    )
    activity = pd.DataFrame(
        {
            "window": "30d",
            "product_id": ["q3", "q4"],
            "event_type": "purchase",
            "count": [1, 9],
            "quantity": 1,
        }
    )
    purchases = pd.DataFrame({"shopper_id": "s", "product_id": ["q0", "q1", "q3", "q4", "q5"]})
    catalog = CatalogSnapshot.from_frames(products, categories, activity, purchases)
    # the model scores q0..q2 only (q2 was never bought): q1 before q0, then unscored q4 (popular), q3
    model = ModelSnapshot("m", "1", TinyRecommender({"q0": 0.2, "q1": 0.9, "q2": 1.0}, {"s"}))
    page = compose(catalog, model, "s", n=10)
    got = [(catalog.product_ids[p.position], p.reason) for p in page.picks]
    assert got == [("q1", "tiny:repeat"), ("q0", "tiny:repeat"), ("q4", "history"), ("q3", "history")]


def test_similar_answers_where_the_product_page_does(client, keys):
    """Delisted (p11), pending (p09) or suspended (p10) merchants' products are 404 to all but their
    owners on their page, and so on /similar (it answered 200 with recommendations); out of stock (p12)
    still shows."""
    callers = {
        "anonymous": {},
        **{k: auth(keys[k]) for k in ("storefront", "merchant", "merchant2", "admin")},
    }
    seen = {}
    for pid in ("p05", "p09", "p10", "p11", "p12", "nope"):
        for name, headers in callers.items():
            page = client.get(f"/v1/products/{pid}", headers=headers).status_code
            similar = client.get(f"/v1/products/{pid}/similar", headers=headers).status_code
            assert similar == page, (pid, name)
            seen[pid, name] = similar
    assert seen["p11", "storefront"] == seen["p11", "anonymous"] == seen["p10", "storefront"] == 404
    assert seen["p11", "merchant"] == seen["p11", "admin"] == seen["p12", "storefront"] == 200  # m1 owns p11
