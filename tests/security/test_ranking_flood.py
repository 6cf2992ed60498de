"""Ranking flooding (issue 9): one identity repeating behaviour events cannot lift a product. Rankings
count distinct registered shoppers per product, behaviour and window, so neither repeats nor invented
shopper ids stand for a crowd. Each test fails on the event-counting code."""

from __future__ import annotations

from datetime import timedelta

from tests.security.test_events import _events, _rankings
from tests.serving.conftest import NOW, auth


def _flood(client, key: str, shopper: str, product: str, n: int, *, prefix: str, **extra) -> None:
    events = [
        {
            "event_id": f"{prefix}-{i}",
            "ts": (NOW - timedelta(hours=i % 20)).isoformat(),
            "shopper_id": shopper,
            "product_id": product,
            "event_type": ("view", "cart", "favorite")[i % 3],
            "session_id": f"session-{i:04d}-{'x' * 16}",  # a new "visit" every time
            **extra,
        }
        for i in range(n)
    ]
    r = client.post("/v1/events", json={"events": events}, headers=auth(key))
    assert r.status_code == 202, r.text
    assert r.json()["inserted"] == n  # every event is stored: only its weight in rankings is bounded


def test_a_shopper_flooding_events_does_not_lift_a_product(client, keys, session_factory):
    # One of each behaviour is a shopper's honest signal; 500 more of them change nothing.
    _flood(client, keys["shopper"], "s1", "p04", 3, prefix="honest")
    honest = _rankings(client)
    p04 = {i["product_id"]: i["value"] for i in honest[("popularity", "1d")]}["p04"]
    _flood(client, keys["shopper"], "s1", "p04", 500, prefix="flood")
    assert _rankings(client) == honest
    # ...while another shopper's view does count (the ranking still moves with real people).
    _flood(client, keys["shopper2"], "s2", "p04", 1, prefix="other")
    after = {i["product_id"]: i["value"] for i in _rankings(client)[("popularity", "1d")]}
    assert after["p04"] == p04 + 1.0


def test_a_storefront_key_replaying_one_shopper_or_back_dating_adds_nothing(client, keys, session_factory):
    _flood(client, keys["storefront"], "s3", "p07", 3, prefix="first")
    before = _rankings(client)
    _flood(client, keys["storefront"], "s3", "p07", 400, prefix="again")
    # back-dated across every window: one shopper is still one shopper in each
    _flood(
        client, keys["storefront"], "s3", "p07", 300, prefix="old", ts=(NOW - timedelta(days=25)).isoformat()
    )
    _flood(client, keys["admin"], "s3", "p07", 300, prefix="admin")  # another key, same shopper
    after = _rankings(client)
    for window in ("1d", "7d"):
        assert after[("popularity", window)] == before[("popularity", window)]
    assert after[("popularity", "30d")] == before[("popularity", "30d")]
    assert after[("popularity", "all")] == before[("popularity", "all")]


def test_made_up_shoppers_and_products_count_in_no_ranking(client, keys, session_factory):
    """A storefront key may speak for any visitor, anonymous ones included (their events feed live
    sessions), so it could invent 500 shopper ids; only registered shoppers count in rankings."""
    before, stored = _rankings(client), _events(session_factory)
    crowd = [
        {"event_id": f"crowd-{i}", "ts": NOW.isoformat(), "shopper_id": f"fake-{i}", "product_id": "p04",
         "event_type": ("view", "cart", "favorite")[i % 3]}
        for i in range(500)
    ] + [{"event_id": "ghost", "ts": NOW.isoformat(), "shopper_id": "s1", "product_id": "nope",
          "event_type": "view"}]  # fmt: skip
    for key in ("storefront", "admin"):
        r = client.post("/v1/events", json={"events": crowd}, headers=auth(keys[key]))
        assert r.status_code == 202 and r.json()["inserted"] == len(crowd), r.text
    assert _rankings(client) == before
    assert len(_events(session_factory)) == len(stored) + 2 * len(crowd)


def test_repeat_events_in_training_popularity_count_once(tmp_path):
    """The search ranker's popularity feature and the trending recommender count shoppers, not events."""
    import pandas as pd

    from features.interactions import build_interactions
    from models.recommenders.popularity import TrendingRecommender

    ts = pd.Timestamp("2026-01-10", tz="UTC")
    rows = [("a", "i1", ts)] * 50 + [("b", "i2", ts), ("c", "i2", ts)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    model = TrendingRecommender(by=None).fit(build_interactions(events))
    items = [i for i, _ in model.recommend(["b"], n=2, exclude_seen=False)[0]]
    assert items[0] == "i2"  # two shoppers beat one shopper's fifty events
