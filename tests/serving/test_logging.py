"""Structured access logs: one JSON line per request with request id, caller, route, status and latency;
no API key, key hash or resident ID number ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from commerce.services.access import hash_key
from serving.logs import MASK, redact
from tests.serving.conftest import auth


@pytest.fixture
def log_lines(client):
    """Everything logged while the test runs: the API's own output (structlog's lines and the standard
    library's records alike), redirected for the test."""
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    buffer = io.StringIO()
    previous = ours.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    ours.setStream(previous)


def test_each_request_is_one_access_line_with_its_request_id(client, keys, log_lines):
    r = client.get(
        "/v1/shoppers/s1/recommendations", headers={**auth(keys["storefront"]), "X-Request-ID": "abc-123"}
    )
    client.post("/v1/shoppers/s1/cart/quote", json={"lines": [{"product_id": "p05", "quantity": 1}]},
                headers=auth(keys["shopper"]))  # fmt: skip
    bogus = client.get("/v1/rankings", headers={"X-Request-ID": "bad id with spaces\n"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    assert (
        bogus.headers["x-request-id"] != "bad id with spaces\n" and len(bogus.headers["x-request-id"]) == 32
    )
    access = [line for line in log_lines() if line["event"] == "request"]
    first = next(line for line in access if line["request_id"] == "abc-123")
    assert first["route"] == "/v1/shoppers/{shopper_id}/recommendations"
    assert first["status"] == 200 and first["role"] == "storefront" and first["latency_ms"] >= 0
    assert first["level"] == "info"
    quote = next(line for line in access if line["path"] == "/v1/shoppers/s1/cart/quote")
    assert quote["role"] == "shopper" and quote["shopper_id"] == "s1" and quote["method"] == "POST"
    anonymous = next(line for line in access if line["path"] == "/v1/rankings")
    assert anonymous["role"] == "anonymous" and anonymous["request_id"] == bogus.headers["x-request-id"]


def test_access_lines_are_json_with_timestamp_level_and_logger(client, log_lines):
    client.get("/v1/rankings", headers={"X-Request-ID": "json-line"})
    line = next(x for x in log_lines() if x.get("request_id") == "json-line")
    assert line["level"] == "info" and line["logger"] == "crosscart.access" and "timestamp" in line


def test_no_key_hash_or_id_number_reaches_the_logs(client, keys, log_lines):
    created = client.post(
        "/v1/api-keys", json={"role": "shopper", "shopper_id": "s1"}, headers=auth(keys["admin"])
    )
    new_key = created.json()["key"]
    client.get("/v1/shoppers/s1/orders", headers=auth(new_key))
    client.get("/v1/shoppers/s1/orders", headers=auth("cc_" + "x" * 43))  # an unknown key: 401
    id_number = "11010519491231002X"
    # a caller's own request id and path are access-line fields
    client.get(f"/v1/shoppers/{id_number}/orders", headers={**auth(keys["admin"]), "X-Request-ID": new_key})
    logging.getLogger("crosscart.test").warning(
        "careless: key=%s hash=%s id=%s", new_key, hash_key(new_key), id_number
    )
    structlog.get_logger("crosscart.test").warning("careless", key=new_key, hash=hash_key(new_key))
    lines = log_lines()
    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (new_key, hash_key(new_key), keys["admin"], keys["shopper"], "cc_" + "x" * 43, id_number):
        assert secret not in text
    masked = next(line for line in lines if line.get("request_id") == MASK)
    assert masked["event"] == "request" and masked["path"] == f"/v1/shoppers/{MASK}/orders"
    assert next(line for line in lines if line["event"] == "careless")["hash"] == MASK


def test_redact_masks_keys_digests_and_id_numbers_only():
    assert redact("k=cc_" + "A" * 43 + " ok") == "k=[redacted] ok"
    assert redact("order 12345 for s1") == "order 12345 for s1"
    assert redact("id 44030419900101123X.") == "id [redacted]."


def test_a_value_orjson_refuses_is_still_logged(log_lines):
    structlog.get_logger("crosscart.test").info("odd values", big=2**70, by_number={1: "x"})
    line = next(x for x in log_lines() if x["event"] == "odd values")
    assert line["big"] == 2**70 and line["by_number"] == {"1": "x"} and line["level"] == "info"


def test_a_broken_log_stream_does_not_fail_requests(client):
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    closed = io.StringIO()
    closed.close()
    previous = ours.setStream(closed)
    try:
        assert client.get("/v1/rankings").status_code == 200
    finally:
        ours.setStream(previous)
