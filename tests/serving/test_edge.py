"""The outer request layer (serving/edge.py): the fast path answers there, before the rest of the
middleware, and its answers still carry the request id, reach the access log and count in the metrics;
a request with a body never takes it (the body-size limit sees it)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from serving.logs import flush_access_lines
from tests.serving.conftest import auth, scrape

URL = "/v1/shoppers/s1/recommendations"
TEMPLATE = "/v1/shoppers/{shopper_id}/recommendations"


@pytest.fixture
def access_lines():
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    buffer = io.StringIO()
    previous = ours.setStream(buffer)

    def read() -> dict[str, dict]:
        flush_access_lines()
        lines = (json.loads(x) for x in buffer.getvalue().splitlines() if x.startswith("{"))
        return {line["request_id"]: line for line in lines if line["event"] == "request"}

    yield read
    ours.setStream(previous)


def _count(metrics: str, status: int, route: str = TEMPLATE) -> float:
    labels = f'method="GET",route="{route}",status="{status}"'
    found = re.search(rf"crosscart_http_requests_total\{{{re.escape(labels)}\}} (\S+)", metrics)
    return float(found.group(1)) if found else 0.0


def test_fast_path_answers_carry_the_request_id_and_are_logged_and_measured(
    client, keys, answered, access_lines
):
    headers = auth(keys["storefront"])
    cold = client.get(URL, params={"n": 3}, headers={**headers, "X-Request-ID": "cold"})
    assert answered[-1] is None  # the key is not cached yet: FastAPI answers and caches it
    fast = client.get(URL, params={"n": 3}, headers={**headers, "X-Request-ID": "fast-1"})
    assert answered[-1] is not None and fast.status_code == 200 and fast.json() == cold.json()
    assert fast.headers["x-request-id"] == "fast-1" and fast.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    made = client.get(URL, params={"n": 3}, headers=headers)  # no id given: one is made
    assert answered[-1] is not None and re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    lines = access_lines()
    for request_id in ("fast-1", made.headers["x-request-id"]):
        line = lines[request_id]
        assert line["route"] == TEMPLATE and line["status"] == 200 and line["role"] == "storefront"
        assert line["path"] == URL and line["key_id"] and line["latency_ms"] >= 0
    metrics = scrape(client)
    assert _count(metrics, 200) == 3.0
    seconds = re.search(
        rf'crosscart_http_request_seconds_count\{{route="{re.escape(TEMPLATE)}"\}} (\S+)', metrics
    )
    assert float(seconds.group(1)) == 3.0


def test_a_request_with_a_body_is_left_to_the_body_size_limit(make_client, settings, keys, answered):
    client = make_client(settings=settings.model_copy(update={"max_body_bytes": 100}))
    headers = auth(keys["storefront"])
    client.get(URL, headers=headers)  # caches the key
    big = client.request("GET", URL, headers=headers, content=b"x" * 200)
    assert answered[-1] is None and big.status_code == 413 and big.json()["code"] == "body_too_large"
    assert "x-request-id" in big.headers
    empty = client.request("GET", URL, headers={**headers, "Content-Length": "0"})
    assert answered[-1] is not None and empty.status_code == 200


def test_fastapi_answers_are_measured_under_their_route_template(client, keys):
    """Routes included under /v1 are labelled with the full template, requests no route matched as
    `unmatched`."""
    client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"]))
    client.get("/v1/no-such-thing")
    metrics = scrape(client)
    assert _count(metrics, 200, "/v1/shoppers/{shopper_id}/orders") == 1.0
    assert _count(metrics, 404, "unmatched") == 1.0


def test_the_fast_path_reads_the_first_authorization_header_as_fastapi_does(client, keys, answered):
    good = auth(keys["storefront"])["Authorization"]
    assert client.get(URL, headers={"Authorization": good}).status_code == 200  # caches the key
    both = client.get(URL, headers=[("Authorization", "Bearer cc_" + "u" * 43), ("Authorization", good)])
    assert answered[-1] is None and both.status_code == 401
