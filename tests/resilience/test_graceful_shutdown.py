"""SIGTERM while a client is still sending its request body: the server drains for a bounded time, then
runs the app's shutdown (which writes what its background writers still hold) instead of waiting for
that client for ever (and being killed by the orchestrator before the writes)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from serving.http import server_options
from tests.resilience.conftest import fault_app, fault_settings, make_keys, seeded_factory

HTTP_PORT = 18753
EXIT_WITHIN = 30  # seconds: the 1 s grace below plus a loaded host's slack; "never" without it


def test_shutdown_does_not_wait_for_ever_on_a_client_that_never_finishes_its_body(tmp_path):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}", buyers=1)
    keys = make_keys(factory, buyers=1)
    # the body's own deadline (header timeout + 1 s per 16 KiB, serving.http) far beyond EXIT_WITHIN: with
    # the default 10 s it closed the slow connection itself, and the test passed without the grace
    settings = fault_settings(tmp_path, shutdown_grace_seconds=1, header_timeout_seconds=120)
    app = fault_app(settings, factory)
    options = server_options(
        settings.header_timeout_seconds, settings.forwarded_allow_ips, settings.shutdown_grace_seconds
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=HTTP_PORT, log_level="error", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1200):  # start-up builds MLflow's empty registry for the delivery model: seconds
        if server.started:
            break
        time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=5) as slow:
        slow.sendall(
            b"POST /v1/shoppers/b0/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + keys["b0"].encode() + b'\r\nContent-Length: 100\r\n\r\n{"li'
        )  # ... and the rest of the body never comes
        for _ in range(200):  # until the request is in the app, which waits for its body
            if server.server_state.tasks:
                break
            time.sleep(0.05)
        server.should_exit = True  # what SIGTERM does
        thread.join(EXIT_WITHIN)
    assert not thread.is_alive(), "shutdown still waiting for the slow client"
    assert app.state.serving.exposures._thread is None  # the app's shutdown ran: writers stopped and flushed
    factory.kw["bind"].dispose()
