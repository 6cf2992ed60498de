"""Issue 10: `/health` answers fast under load. The HTTP protocol answers it in the callback that read it,
before the requests already queued on the event loop run and without crossing the app (serving.http);
each test runs on both of its protocols (httptools, `crosscart serve`'s, and h11, the fallback)."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from uvicorn.importer import import_from_string
from uvicorn.server import ServerState

from serving.http import HEALTH_BODY, PROTOCOL
from serving.http_httptools import HeaderTimeoutHttpToolsProtocol
from serving.routers import health
from tests.resilience.conftest import FakeTransport, running_server

HTTP_PORT = 18100  # issue 10's port range
BLOCK = 0.2  # how long the app's first request holds the event loop
WAIT = 1.5  # how long /wait waits (not holding the loop)


class RecordingApp:
    """Answers 204 to anything, after blocking the loop BLOCK seconds for /slow; records the paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.paths.append(
            scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        if scope["path"] == "/slow":
            time.sleep(BLOCK)  # CPU work on the loop, as other requests' steps are
        elif scope["path"] == "/wait":
            await asyncio.sleep(WAIT)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _connection(protocol_class, app, **config):
    protocol = protocol_class(
        config=uvicorn.Config(app, log_level="error", **config), server_state=ServerState(), app_state={}
    )
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


HEALTH = b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n"
OTHER = b"GET /other HTTP/1.1\r\nHost: api\r\n\r\n"


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "no answer"
        await asyncio.sleep(0.01)


def test_health_is_answered_by_the_read_before_requests_queued_on_the_loop(http_protocol):
    app = RecordingApp()

    async def run():
        busy, busy_out = _connection(http_protocol, app)
        probe, probe_out = _connection(http_protocol, app)
        busy.data_received(b"GET /slow HTTP/1.1\r\nHost: api\r\n\r\n")  # read in the same loop pass
        probe.data_received(HEALTH)
        answered_at_read = bytes(probe_out.written)
        slow_waiting = not busy_out.written
        await _until(lambda: busy_out.written)
        return answered_at_read, slow_waiting

    answered_at_read, slow_waiting = asyncio.run(run())
    assert answered_at_read.startswith(b"HTTP/1.1 200 OK\r\n") and answered_at_read.endswith(HEALTH_BODY)
    assert b"content-type: application/json" in answered_at_read
    assert slow_waiting  # the request read before it had not run yet: /health did not queue behind it
    assert app.paths == ["/slow"]  # /health never reached the app


def test_pipelined_health_checks_keep_their_order_and_the_connection(http_protocol):
    app = RecordingApp()

    async def run():
        protocol, out = _connection(http_protocol, app)
        protocol.data_received(HEALTH + OTHER + HEALTH)
        first = bytes(out.written)
        await _until(lambda: out.written.count(b"HTTP/1.1") == 3)
        return first, bytes(out.written), out.closing

    first, written, closing = asyncio.run(run())
    assert first.count(b"HTTP/1.1 200") == 1 and b"204" not in first  # the app's answer comes second
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", written)
    assert statuses == [b"200", b"204", b"200"]
    assert not closing and app.paths == ["/other"]


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
        b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",  # uvicorn closes HTTP/1.0 anyway
    ],
    ids=["close", "http1.0", "http1.0-keep-alive"],
)
def test_health_closes_the_connection_when_the_client_asks(http_protocol, request_line):
    app = RecordingApp()

    async def run():
        protocol, out = _connection(http_protocol, app)
        protocol.data_received(request_line + OTHER)  # nothing after the close is answered
        await _until(lambda: out.closing)
        await asyncio.sleep(0.05)  # time for a request that should not run
        return bytes(out.written)

    written = asyncio.run(run())
    assert written.startswith(b"HTTP/1.1 200") and written.endswith(HEALTH_BODY)
    assert b"connection: close" in written.lower() and written.count(b"HTTP/1.1") == 1
    assert app.paths == []


def test_the_header_deadline_does_not_cut_a_request_after_a_health_check(http_protocol):
    """A health check answered at the read and a request pipelined behind it, slower than the header
    deadline: the deadline ended with that request's headers, so its answer arrives."""
    app = RecordingApp()

    async def run():
        protocol, out = _connection(http_protocol, app, timeout_keep_alive=1)
        protocol.data_received(HEALTH + b"GET /wait HTTP/1.1\r\nHost: api\r\n\r\n")
        await _until(lambda: out.written.count(b"HTTP/1.1") == 2 or out.closing, timeout=WAIT + 2)
        return bytes(out.written), out.closing

    written, closing = asyncio.run(run())
    assert re.findall(rb"HTTP/1.1 (\d{3})", written) == [b"200", b"204"] and not closing
    assert app.paths == ["/wait"]


def test_crosscart_serve_uses_the_httptools_protocol():
    assert import_from_string(PROTOCOL) is HeaderTimeoutHttpToolsProtocol


def test_other_health_requests_go_to_the_app(http_protocol):
    app = RecordingApp()

    async def run():
        for request in (
            b"GET /health?deep=1 HTTP/1.1\r\nHost: api\r\n\r\n",
            b"POST /health HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n{}",
        ):
            protocol, out = _connection(http_protocol, app)
            protocol.data_received(request)
            await _until(lambda out=out: out.written)

    asyncio.run(run())
    assert app.paths == ["/health?deep=1", "/health", "/health"]


def test_the_route_answers_what_the_protocol_answers():
    app = FastAPI()
    app.include_router(health.router)
    response = TestClient(app).get("/health")
    assert response.status_code == 200 and response.content == HEALTH_BODY
    assert response.headers["content-type"] == "application/json"


def test_a_served_health_check_carries_the_server_headers_and_keeps_alive(http_protocol):
    app = RecordingApp()
    with running_server(app, HTTP_PORT, http=http_protocol):
        with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=5) as sock:
            answers = []
            for _ in range(2):  # one connection, two checks
                sock.sendall(HEALTH)
                data = b""
                while not data.endswith(HEALTH_BODY) and (chunk := sock.recv(1000)):
                    data += chunk
                answers.append(data)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200 OK") and b"\r\ndate: " in answer
    assert app.paths == []
