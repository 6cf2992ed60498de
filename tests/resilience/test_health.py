"""Issue 10: `/health` answers fast under load. The HTTP protocol answers it in the callback that read it,
before the requests already queued on the event loop run and without crossing the app (serving.http)."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from uvicorn.server import ServerState

from serving.http import HEALTH_BODY, HeaderTimeoutH11Protocol
from serving.routers import health
from tests.resilience.conftest import FakeTransport, running_server

HTTP_PORT = 18100  # issue 10's port range
BLOCK = 0.2  # how long the app's first request holds the event loop


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
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _connection(app) -> tuple[HeaderTimeoutH11Protocol, FakeTransport]:
    config = uvicorn.Config(app, log_level="error")
    protocol = HeaderTimeoutH11Protocol(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


HEALTH = b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n"


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "no answer"
        await asyncio.sleep(0.01)


def test_health_is_answered_by_the_read_before_requests_queued_on_the_loop():
    app = RecordingApp()

    async def run():
        busy, busy_out = _connection(app)
        probe, probe_out = _connection(app)
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


def test_pipelined_health_checks_keep_their_order_and_the_connection():
    app = RecordingApp()

    async def run():
        protocol, out = _connection(app)
        protocol.data_received(HEALTH + b"GET /other HTTP/1.1\r\nHost: api\r\n\r\n" + HEALTH)
        first = bytes(out.written)
        await _until(lambda: out.written.count(b"HTTP/1.1") == 3)
        return first, bytes(out.written), out.closing

    first, written, closing = asyncio.run(run())
    assert first.count(b"HTTP/1.1 200") == 1 and b"204" not in first  # the app's answer comes second
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", written)
    assert statuses == [b"200", b"204", b"200"]
    assert not closing and app.paths == ["/other"]


def test_health_closes_the_connection_when_the_client_asks():
    async def run():
        protocol, out = _connection(RecordingApp())
        protocol.data_received(b"GET /health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        return bytes(out.written), out.closing

    written, closing = asyncio.run(run())
    assert written.startswith(b"HTTP/1.1 200") and b"connection: close" in written.lower() and closing


def test_other_health_requests_go_to_the_app():
    app = RecordingApp()

    async def run():
        for request in (
            b"GET /health?deep=1 HTTP/1.1\r\nHost: api\r\n\r\n",
            b"POST /health HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n{}",
        ):
            protocol, out = _connection(app)
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


def test_a_served_health_check_carries_the_server_headers_and_keeps_alive():
    app = RecordingApp()
    with running_server(app, HTTP_PORT):
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
