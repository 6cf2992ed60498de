"""Round 5 of attacking the running API and console as a hostile client (holes rounds 1-4 and docs/api.md
do not list): each test failed before its fix."""

from __future__ import annotations

import random
import tracemalloc

from commerce.search import analysis
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in


def _random_chinese(rnd: random.Random, n: int) -> str:
    return "".join(chr(rnd.randint(0x4E00, 0x9FA5)) for _ in range(n))


def test_random_search_queries_do_not_fill_the_process_with_cached_cuts():
    """Every Chinese run a query held was kept in the 100,000-run cache the index fills with product
    names: random 100-character queries (anyone may search) took 8 KB each there, 840 MB a worker once
    full. Query runs have a small cache of their own; a query past it keeps nothing."""
    rnd = random.Random(5)
    analysis.tokens("面霜")  # jieba's dictionary is loaded once, not per query
    tracemalloc.start()  # before the cache fills, so that what it lets go counts too
    try:
        for _ in range(analysis.QUERY_RUNS_CACHED + 100):
            analysis.tokens(_random_chinese(rnd, 20))
        full = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            analysis.tokens(_random_chinese(rnd, 20))
        kept = tracemalloc.get_traced_memory()[0] - full
    finally:
        tracemalloc.stop()
    assert kept < 200_000, f"500 more queries kept {kept / 1e6:.1f} MB"
    assert analysis.segment("保湿面霜").split() == ["保湿", "面霜"]  # indexing cuts as before


def test_answers_to_a_key_and_console_pages_are_not_stored(client, keys):
    """Only the catalog's cached reads said how to cache them: a key's orders, a freshly created API key
    (201 with the secret), recommendations and every signed-in console page (with its CSRF token) carried
    no Cache-Control, so a browser's cache or back button could show them after sign-out, and a proxy
    could keep them. Every answer to a key, and every console page, is `no-store` now."""
    admin, shopper = auth(keys["admin"]), auth(keys["shopper"])
    private = [
        client.get("/v1/api-keys", headers=admin),
        client.post("/v1/api-keys", json={"role": "marketer"}, headers=admin),
        client.get("/v1/shoppers/s1/orders", headers=shopper),
        client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"])),
        client.get("/v1/orders/999999", headers=shopper),  # refusals too
        client.get("/v1/products/no-such-product", headers=shopper),  # the catalog's refusals as well
    ]
    sign_in(client, keys["admin"])
    private += [client.get("/console"), client.get("/console/keys"), client.get("/console/sign-in")]
    assert [r.headers.get("cache-control") for r in private] == ["no-store"] * len(private), [
        (r.request.url.path, r.status_code) for r in private
    ]
    # what everyone gets alike keeps its caching
    assert client.get("/v1/products").headers["cache-control"] == "public, max-age=30"
    assert client.get("/v1/products", headers=shopper).headers["cache-control"] == "private, max-age=30"
    style = client.get("/console/static/console.css")
    assert style.status_code == 200 and "cache-control" not in style.headers
