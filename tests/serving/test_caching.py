"""Public catalog and ranking reads carry an ETag and answer 304 when the client already has them."""

from __future__ import annotations

from tests.serving.conftest import auth


def test_etag_and_304_on_public_reads(client):
    for path in ("/v1/products", "/v1/products/p01", "/v1/rankings", "/v1/categories"):
        first = client.get(path)
        assert first.status_code == 200, path
        etag = first.headers["etag"]
        assert etag.startswith('"') and first.headers["cache-control"] == "public, max-age=30"
        assert first.headers["vary"] == "Authorization"
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert client.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
        assert client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_a_changed_catalog_changes_the_etag(client, keys):
    before = client.get("/v1/products/p01")
    r = client.patch("/v1/products/p01", json={"title": "Renamed"}, headers=auth(keys["merchant"]))
    assert r.status_code == 200
    client.app.state.serving.catalog.refresh()
    after = client.get("/v1/products/p01", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.json()["title"] == "Renamed"
    assert after.headers["etag"] != before.headers["etag"]


def test_keyed_answers_are_private_and_errors_are_not_cached(client, keys):
    keyed = client.get("/v1/products", headers=auth(keys["storefront"]))
    assert keyed.headers["cache-control"] == "private, max-age=30"
    missing = client.get("/v1/products/nope")
    assert missing.status_code == 404 and "etag" not in missing.headers
    assert "etag" not in client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"])).headers
