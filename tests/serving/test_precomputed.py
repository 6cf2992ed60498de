"""Issue 13 item 3: the API serves `crosscart batch-score` lists when they were made by the model version
it serves, falls back to online scoring otherwise, and says which source answered."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from serving.precomputed import load_precomputed, load_precomputed_redis, publish_to_redis, write_meta
from tests.serving.conftest import auth

MODEL = "crosscart-recommender"  # the registered name the test app serves (version "1")
# The online model would rank p01, p02, ... first; p03 and p09 break serving rules for s1 (bought before,
# out of stock), and are skipped as they are online.
LISTS = {"s1": ["p07", "p03", "p09", "p05", "p06", "p08"]}


def write_lists(directory, lists=LISTS, version="1", n=6):
    rows = [
        {"shopper_id": shopper, "rank": rank, "product_id": product, "score": 1.0 - rank / 10}
        for shopper, products in lists.items()
        for rank, product in enumerate(products, start=1)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(directory / "part-00000.parquet", index=False)
    write_meta(directory, MODEL, version, n)
    return directory


def organic(page: dict) -> list[str]:
    return [item["product_id"] for item in page["items"] if not item["sponsored"]]


def test_precomputed_lists_are_served_for_their_model_version(make_client, keys, settings, tmp_path):
    directory = write_lists(tmp_path / "lists")
    client = make_client(settings=settings.model_copy(update={"precomputed_dir": str(directory)}))
    storefront, shopper = auth(keys["storefront"]), auth(keys["shopper"])
    for headers in (storefront, shopper):  # the ASGI fast path and the FastAPI route alike
        page = client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=headers).json()
        assert page["model"]["source"] == "precomputed" and page["model"]["version"] == "1"
        assert organic(page) == ["p07", "p05", "p06"]
        assert {item["reason"] for item in page["items"] if not item["sponsored"]} == {"tiny:precomputed"}
    # A shopper without a list, or a page longer than the lists, is scored online.
    other = client.get("/v1/shoppers/s2/recommendations", params={"n": 3}, headers=storefront).json()
    assert other["model"]["source"] == "online"
    long = client.get("/v1/shoppers/s1/recommendations", params={"n": 8}, headers=storefront).json()
    assert long["model"]["source"] == "online" and organic(long)[0] == "p01"


def test_lists_of_another_model_version_are_not_served(make_client, keys, settings, tmp_path):
    directory = write_lists(tmp_path / "lists", version="7")  # made by a version no longer served
    client = make_client(settings=settings.model_copy(update={"precomputed_dir": str(directory)}))
    page = client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=auth(keys["storefront"]))
    assert page.json()["model"]["source"] == "online" and organic(page.json())[0] == "p01"


def test_without_a_directory_pages_are_online(client, keys):
    page = client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=auth(keys["storefront"]))
    assert page.json()["model"]["source"] == "online"


def test_a_new_batch_is_loaded_and_an_unchanged_one_is_kept(tmp_path):
    directory = write_lists(tmp_path / "lists")
    first = load_precomputed(directory)
    assert len(first) == 1 and first.lookup("s9") is None
    assert list(first.lookup("s1")[0]) == LISTS["s1"]
    assert load_precomputed(directory, first) is first  # same batch: not read again

    write_lists(directory, {"s1": ["p02"], "s2": ["p04", "p06"]}, n=2)
    os.utime(directory / "_precomputed.json", (first.stamp + 5, first.stamp + 5))
    second = load_precomputed(directory, first)
    assert second is not first and list(second.lookup("s2")[0]) == ["p04", "p06"] and second.n == 2
    assert load_precomputed(tmp_path / "none") is None


def test_lists_published_to_redis_are_served_by_replicas_without_the_files(
    make_client, keys, settings, tmp_path
):
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/12"
    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except redis.exceptions.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    directory = write_lists(tmp_path / "lists")
    assert publish_to_redis(directory, url) == 1
    shutil.rmtree(directory)  # the replica has only Redis
    client = make_client(settings=settings.model_copy(update={"redis_url": url, "precomputed_redis": True}))
    page = client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=auth(keys["storefront"]))
    assert page.json()["model"]["source"] == "precomputed" and organic(page.json()) == ["p07", "p05", "p06"]
    first = client.app.state.serving.precomputed.current
    assert load_precomputed_redis(url, first) is first  # unchanged batch: not fetched again
    write_lists(tmp_path / "next", {"s1": ["p02"]}, n=1)
    publish_to_redis(tmp_path / "next", url)
    assert list(load_precomputed_redis(url, first).lookup("s1")[0]) == ["p02"]


def _spoil(directory, cut: bool) -> None:
    """A part cut short (a copy interrupted, a full disk) or overwritten, under a meta that announces a new
    batch (so replicas read it)."""
    part = directory / "part-00000.parquet"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2] if cut else b"\x00" * len(data))
    write_meta(directory, MODEL, "1", 6)
    os.utime(directory / "_precomputed.json", (1, 1))  # a stamp of its own, whatever the clock's resolution


@pytest.mark.parametrize("cut", [True, False], ids=["cut-short", "overwritten"])
def test_a_corrupt_part_keeps_the_loaded_batch_and_ready_names_it(make_client, keys, settings, tmp_path, cut):
    """Round 6 fault injection: at a reload the batch loaded before keeps serving; at start pages are
    scored online; `/ready` says why either way (it said nothing)."""
    directory = write_lists(tmp_path / "lists")
    client = make_client(settings=settings.model_copy(update={"precomputed_dir": str(directory)}))
    storefront = auth(keys["storefront"])
    assert client.get("/ready").json()["precomputed_error"] is None
    _spoil(directory, cut)
    assert not client.app.state.serving.precomputed.refresh()
    page = client.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=storefront)
    assert page.status_code == 200 and page.json()["model"]["source"] == "precomputed"
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["precomputed_error"] == "corrupt"  # pyarrow's message: the log

    started = make_client(settings=settings.model_copy(update={"precomputed_dir": str(directory)}))
    page = started.get("/v1/shoppers/s1/recommendations", params={"n": 3}, headers=storefront)
    assert page.status_code == 200 and page.json()["model"]["source"] == "online"
    assert started.get("/ready").json()["precomputed_error"] == "corrupt"
    write_lists(directory)  # the next batch-score
    assert started.app.state.serving.precomputed.refresh()
    assert started.get("/ready").json()["precomputed_error"] is None
