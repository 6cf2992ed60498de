"""A log stream that stops taking lines (a stuck log collector leaving the pipe full, a disk stalled
under the log file): every line was written on the thread that logged it, the access lines on the event
loop, so once the pipe's 64 KiB filled the whole API stopped, `/health` included. Lines now leave
through a writer thread of their own with a bounded backlog: a stream that stops costs log lines
(counted, and the count written once it takes lines again), never requests."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from serving.logs import flush_access_lines
from tests.resilience.conftest import fault_settings, seeded_factory

LONG_PATH = "/missing/" + "x" * 12_000  # a 404 whose access line is about 12 KB: 6 fill a pipe


def test_a_log_stream_that_stops_reading_never_holds_requests(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    client = open_client(fault_settings(tmp_path), factory)
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    read_end, write_end = os.pipe()
    stuck = os.fdopen(write_end, "w")  # nobody reads it: a log collector that stopped
    previous = ours.setStream(stuck)
    answered: list[int] = []

    def traffic() -> None:
        for _ in range(100):  # about 1.2 MB of access lines, past the backlog
            answered.append(client.get(LONG_PATH).status_code)
        answered.append(client.get("/health").status_code)

    worker = threading.Thread(target=traffic, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(timeout=30)
    blocked, by_then = worker.is_alive(), len(answered)  # was: held on the full pipe after 6 requests
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_end)), daemon=True)
    reader.start()  # the collector is back: what waited (and whoever was blocked) goes through
    worker.join(timeout=30)
    try:
        assert not blocked, f"requests stalled on the log stream after {by_then} answers"
        assert answered == [404] * 100 + [200] and time.monotonic() - start < 60
        flush_access_lines()  # the backlog reaches the stream, bounded in time
    finally:
        ours.setStream(previous)
        stuck.close()
    reader.join(timeout=10)
    lines = [json.loads(line) for line in received.decode().splitlines()]  # every line whole
    access = [line for line in lines if line["event"] == "request"]
    dropped = [line for line in lines if "log lines dropped" in line["event"]]
    assert 0 < len(access) < 100 and len(dropped) == 1  # some kept, the rest counted
    assert dropped[0]["dropped"] + len(access) >= 100


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
