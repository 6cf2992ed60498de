"""Redis losing its data (FLUSHDB, a restart without persistence) while replicas serve the lists
`crosscart batch-score --redis` published: each replica's next reload found no batch and dropped the
one it served, scoring every page online until the next batch-score. A replica now keeps the batch it
loaded (and logs why) until a new one is published; rate limits and sessions only start afresh."""

from __future__ import annotations

import pandas as pd
import pytest
import redis

from serving.precomputed import publish_to_redis, write_meta
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth

REDIS_URL = "redis://127.0.0.1:6379/6"


@pytest.fixture
def flushable_redis():
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def publish(tmp_path, lists: dict[str, list[str]]) -> None:
    directory = tmp_path / "lists"
    directory.mkdir(exist_ok=True)
    rows = [
        {"shopper_id": shopper, "rank": rank, "product_id": product, "score": 1.0 - rank / 10}
        for shopper, products in lists.items()
        for rank, product in enumerate(products, start=1)
    ]
    pd.DataFrame(rows).to_parquet(directory / "part-00000.parquet", index=False)
    write_meta(directory, "crosscart-recommender", "1", 6)  # the test app serves version "1"
    publish_to_redis(directory, REDIS_URL)


def test_a_flushed_redis_keeps_the_loaded_lists_until_a_new_batch_is_published(
    tmp_path, open_client, flushable_redis, caplog
):
    publish(tmp_path, {"s1": ["p07", "p05", "p06", "p08", "p10", "p11"]})
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    settings = fault_settings(tmp_path, redis_url=REDIS_URL, precomputed_redis=True)
    client = open_client(settings, factory)
    lists = client.app.state.serving.precomputed

    def page() -> dict:
        headers = auth(keys["storefront"])
        return client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=headers).json()

    assert page()["model"]["source"] == "precomputed"
    flushable_redis.flushdb()
    assert lists.refresh() is False  # was True, with no lists: every page scored online
    assert page()["model"]["source"] == "precomputed"
    assert "gone from Redis" in lists.last_error
    assert any("gone from Redis" in r.getMessage() for r in caplog.records)

    publish(tmp_path, {"s1": ["p06", "p05", "p07", "p08", "p10", "p11"]})  # the next batch-score
    assert lists.refresh() is True and lists.last_error is None
    assert [item["product_id"] for item in page()["items"] if not item["sponsored"]][0] == "p06"
    factory.kw["bind"].dispose()
