"""Admission to the database slots in a burst: a request's deadline counts from when its headers were
read, so the time it spent queued on the event loop behind the rest of the burst is not granted again,
and a request already late is refused at once, on the event loop (no worker thread)."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn
from uvicorn.server import ServerState

from serving.resilience import DatabaseBusy, DatabaseGate, DeadlineStamp
from tests.resilience.conftest import FakeTransport

WAIT = 0.5  # the gate's wait for a slot
BUSY_LOOP = 0.8  # how long the event loop is busy between reading the request and running it


async def _late_request(protocol_class) -> dict:
    """One slot, held throughout; a request is read, then the loop stays busy for BUSY_LOOP (the requests
    read in the same pass running up to their first wait) before the request's task runs."""
    gate = DatabaseGate(requests=1, auth=1, wait_seconds=WAIT)
    outcome: dict = {}

    async def app(scope, receive, send):
        try:
            async with gate.request_slot(scope["state"]["db_deadline"]):
                outcome["status"] = 200
        except DatabaseBusy:
            outcome["status"] = 503
        outcome["answered"], outcome["thread"] = time.monotonic(), threading.current_thread()
        await send({"type": "http.response.start", "status": outcome["status"], "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(DeadlineStamp(app, gate), log_level="error")
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    async with gate.request_slot():
        read = time.monotonic()
        protocol.data_received(
            b"POST /v1/shoppers/b1/orders HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n"
        )
        time.sleep(BUSY_LOOP)  # blocks the loop, as the rest of the burst does
        while "status" not in outcome:
            await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    return outcome | {"after_read": outcome["answered"] - read, "written": bytes(transport.written)}


def test_a_request_late_from_queueing_on_the_event_loop_is_refused_at_once(http_protocol):
    outcome = asyncio.run(_late_request(http_protocol))
    assert outcome["status"] == 503 and outcome["written"].startswith(b"HTTP/1.1 503")
    # Its wait ended WAIT after its headers were read, while the loop was still busy: refused as soon as
    # it runs, not after another full WAIT from there (BUSY_LOOP + WAIT = 1.3 s).
    assert outcome["after_read"] < BUSY_LOOP + 0.25, outcome["after_read"]
    assert outcome["thread"] is threading.main_thread()  # refused on the event loop: no worker thread


def test_a_deadline_counts_from_arrival_when_the_protocol_stamped_it():
    gate = DatabaseGate(requests=1, wait_seconds=WAIT)
    assert gate.deadline(100.0) == 100.0 + WAIT
    before = time.monotonic()
    assert before + WAIT <= gate.deadline() <= time.monotonic() + WAIT
