"""Round 14: a hostile client against how the API reads a request (its framing, its credential, its
numbers), on the tiny marketplace of tests/serving. Each test failed before its fix."""

from __future__ import annotations

import socket

from serving.http import HeaderTimeoutH11Protocol, server_options
from tests.resilience.conftest import running_server
from tests.serving.conftest import auth

PORT = 18791  # this helper's range (18790-18799)


def _head_of_answer(request: bytes) -> bytes:
    """The status line and headers the server answers `request` (raw bytes on a new connection) with."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (data := conn.recv(65536)):
            answer += data
    return answer.partition(b"\r\n\r\n")[0]


def test_a_body_framed_two_ways_is_refused(make_client, settings, keys):
    """h11 (`crosscart serve`'s protocol where httptools is not installed) reads a body sent with both
    `Content-Length` and `Transfer-Encoding: chunked` as chunked, while the body-size limit believed the
    length: `Content-Length: 1` let any chunked body through it (an anonymous 100 MB POST took the
    server 221 MiB more), and with an Idempotency-Key the request ran. Such a request is a 400 now and
    its connection is closed, as the httptools parser already answered it."""
    client = make_client(settings=settings.model_copy(update={"max_body_bytes": 1_000}))
    admin = auth(keys["admin"])
    made = client.post("/v1/api-keys", json={"role": "storefront"}, headers=admin).json()
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (3_000, b"x" * 3_000)  # three times the limit
    request = (
        b"DELETE /v1/api-keys/%d HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer %s\r\n"
        b"Idempotency-Key: two-framings\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n%s"
    ) % (made["id"], keys["admin"].encode(), body)
    options = {**server_options(5, "", 20), "http": HeaderTimeoutH11Protocol}
    with running_server(client.app, PORT, lifespan="off", **options):
        head = _head_of_answer(request)
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"\r\nconnection: close" in head.lower()
    listed = client.get("/v1/api-keys", params={"role": "storefront"}, headers=admin).json()["items"]
    assert [k["revoked_at"] for k in listed if k["id"] == made["id"]] == [None]
