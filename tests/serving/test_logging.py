"""Structured access logs: one JSON line per request with request id, caller, route, status and latency;
no API key, key hash or resident ID number ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce.services.access import hash_key
from serving.logs import _SECRETS, FLUSH_BYTES, FLUSH_SECONDS, MASK, flush_access_lines, redact
from tests.serving.conftest import auth


@pytest.fixture
def log_lines(client):
    """Everything logged while the test runs: the API's own output (structlog's lines and the standard
    library's records alike), redirected for the test."""
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    buffer = io.StringIO()
    previous = ours.setStream(buffer)

    def read() -> list[dict]:
        flush_access_lines()  # the access lines still waiting for their batch
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]

    yield read
    ours.setStream(previous)


class _Writes(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self):
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


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


def test_uvicorn_writes_no_second_access_line():
    """uvicorn's protocols log a request of their own whenever "uvicorn.access" has a handler (checked
    with hasHandlers(), so a propagating logger counts): under `crosscart serve` each request was two
    lines."""
    from serving.logs import configure_logging

    configure_logging()  # as create_app does
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers()  # start-up and errors still reach the stream


def test_a_fast_path_answer_is_logged_like_any_other(client, keys, log_lines):
    """The storefront's cached key takes the ASGI fast path (serving/fastpath.py), which bypasses FastAPI's
    routing: its line still names the route template and the caller, never the key."""
    headers = auth(keys["storefront"])
    for request_id in ("cold", "warm-1", "warm-2"):  # the first one fills the key cache
        r = client.get("/v1/shoppers/s1/recommendations?n=3", headers={**headers, "X-Request-ID": request_id})
        assert r.status_code == 200 and r.headers["x-request-id"] == request_id
    access = {line["request_id"]: line for line in log_lines() if line["event"] == "request"}
    for request_id in ("cold", "warm-1", "warm-2"):
        line = access[request_id]
        assert line["route"] == "/v1/shoppers/{shopper_id}/recommendations"
        assert line["path"] == "/v1/shoppers/s1/recommendations" and line["method"] == "GET"
        assert line["role"] == "storefront" and line["key_id"] and line["status"] == 200
        assert line["latency_ms"] >= 0 and line["timestamp"].endswith("Z")
        text = json.dumps(line)
        assert keys["storefront"] not in text and hash_key(keys["storefront"]) not in text


def test_every_line_logged_during_a_request_carries_its_id(client, log_lines):
    async def noisy():
        logging.getLogger("crosscart.test").warning("from the standard library")
        structlog.get_logger("crosscart.test").warning("from structlog")
        return {"ok": True}

    client.app.add_api_route("/noisy", noisy)
    assert client.get("/noisy", headers={"X-Request-ID": "req-42"}).status_code == 200
    client.get("/v1/rankings")  # another request: its own id, and nothing left bound after the first
    logging.getLogger("crosscart.test").warning("outside any request")
    lines = {line["event"]: line for line in log_lines()}
    assert lines["from the standard library"]["request_id"] == "req-42"
    assert lines["from structlog"]["request_id"] == "req-42"
    assert "request_id" not in lines["outside any request"]


def test_the_access_line_follows_the_log_level(client, log_lines):
    from serving.logs import configure_logging

    configure_logging("warning")
    try:
        client.get("/v1/rankings", headers={"X-Request-ID": "quiet"})
    finally:
        configure_logging("info")
    client.get("/v1/rankings", headers={"X-Request-ID": "heard"})
    ids = {line.get("request_id") for line in log_lines() if line["event"] == "request"}
    assert "heard" in ids and "quiet" not in ids


def test_access_lines_leave_in_whole_line_batches_within_the_flush_interval(client, keys):
    """Requests served close together share a write; no write splits a line or exceeds FLUSH_BYTES (a pipe
    shared by several workers keeps each write whole only up to PIPE_BUF), and every line is out within
    FLUSH_SECONDS without anyone flushing."""
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    stream = _Writes()
    previous = ours.setStream(stream)
    try:
        for i in range(40):
            client.get("/v1/shoppers/s1/recommendations?n=3", headers={**auth(keys["storefront"]),
                       "X-Request-ID": f"batch-{i}"})  # fmt: skip
        time.sleep(FLUSH_SECONDS * 4)  # the app's event loop keeps running in the test client's thread
    finally:
        ours.setStream(previous)
    ids = [json.loads(x)["request_id"] for x in stream.getvalue().splitlines() if '"event":"request"' in x]
    assert ids == [f"batch-{i}" for i in range(40)]
    access = [w for w in stream.writes if '"event":"request"' in w]
    assert len(access) < 40
    assert all(w.endswith("\n") and len(w.encode()) <= FLUSH_BYTES for w in access)


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


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefXc_/ -A", max_size=90))
def test_redact_skips_only_text_that_cannot_hold_a_secret(text):
    """The quick checks in front of the full pattern never change what it masks."""
    embedded = [text, f"cc_{text}", f"x {'7' * 17}{text}", f"{text} {'a1' * 32}"]
    for value in embedded:
        assert redact(value) == _SECRETS.sub(MASK, value)


def test_access_line_timestamps_are_utc_iso_with_microseconds(client, log_lines):
    before = datetime.now(UTC)
    client.get("/v1/rankings", headers={"X-Request-ID": "stamped"})
    line = next(x for x in log_lines() if x.get("request_id") == "stamped")
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)


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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="0123456789abcdefXc_/ -A", max_size=90), min_size=1, max_size=4),
    st.sampled_from(["", "cc_" + "k" * 40, "7" * 18, "a1" * 32]),
    st.integers(0, 4),
)
def test_the_access_line_masks_exactly_what_masking_each_field_does(texts, secret, at):
    """The access line tests all its fields at once before masking any (serving.logs._AccessLines.write):
    what reaches the line is what masking field by field gives."""
    from serving.logs import QueuedStreamHandler, _AccessLines, _HandlerStream, _redact_event

    texts = [*texts[:at], f"{texts[0]}{secret}", *texts[at:]]
    fields = {f"f{i}": text for i, text in enumerate(texts)} | {"status": 200, "role": None}
    stream = _Writes()
    handler = QueuedStreamHandler(stream)
    lines = _AccessLines(_HandlerStream(handler, "test"), logging.INFO, True)
    lines.write(dict(fields))
    lines.flush()
    assert handler.drain()
    written = json.loads(stream.getvalue())
    expected = _redact_event(None, None, dict(fields))
    assert {name: written[name] for name in expected} == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789a/\n٣", max_size=60), st.integers(0, 20), st.sampled_from("7٣"))
def test_the_quick_digit_run_test_agrees_with_the_pattern(text, run, digit):
    """ASCII text takes a byte translation, other text (`\\d` is any Unicode digit) the pattern."""
    from serving.logs import _DIGIT_RUN, _digit_run

    for value in (text, f"{text}{digit * run}", f"{digit * run}x{text}"):
        assert _digit_run(value) == (_DIGIT_RUN.search(value) is not None)
