"""Issue 10 item 5: a broken model version is not retried until the alias moves (and /ready says so),
the database engine bounds connects and statements, and slow request headers are cut off."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import exc, text

from bench.faultkit import FrozenServer
from commerce.db import make_engine
from tests.resilience.conftest import (
    fault_settings,
    invariants,
    make_keys,
    recommender_source,
    running_server,
    seeded_factory,
)
from tests.serving.conftest import TinyRecommender, auth

FROZEN_DB_PORT = 18103
HTTP_PORT = 18104


def test_broken_version_waits_for_the_alias_to_move_and_ready_says_so(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    source = recommender_source()
    client = open_client(fault_settings(tmp_path), factory, model_source=source)
    store = client.app.state.serving.models
    assert store.current.version == "1" and source.loads == 1
    assert client.get("/ready").json()["model_alias_error"] is None

    source.alias, source.broken = "2", {"2"}
    for _ in range(3):
        store.refresh()
    assert source.loads == 2  # tried once, not on every poll
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["model_version"] == "1"  # the previous model still serves
    assert ready["model_alias_error"] == "load-failed"
    assert client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"])).status_code == 200

    source.versions["3"] = TinyRecommender({"p02": 1.0}, {"s1"})
    source.alias = "3"
    store.refresh()
    assert source.loads == 3 and store.current.version == "3"
    assert client.get("/ready").json()["model_alias_error"] is None


def test_statement_timeout_ends_a_hung_query(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("statement timeouts are PostgreSQL's; SQLite's counterpart is the busy timeout")
    engine = make_engine(database_url, statement_timeout=0.5)
    start = time.perf_counter()
    with pytest.raises(exc.OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT pg_sleep(5)"))
    assert time.perf_counter() - start < 3
    engine.dispose()


def test_a_row_locked_too_long_is_a_busy_503_not_an_outage(database_url, tmp_path, open_client):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no row locks (BEGIN IMMEDIATE waits for its busy timeout)")
    factory = seeded_factory(database_url, buyers=1, lock_timeout=0.3)
    keys = make_keys(factory, buyers=1)
    client = open_client(fault_settings(tmp_path), factory)
    holder = factory.kw["bind"].connect()
    try:
        holder.execute(text("SELECT quantity FROM stock WHERE product_id = 'p01' FOR UPDATE"))
        start = time.perf_counter()
        r = client.post(
            "/v1/shoppers/b0/orders",
            json={"lines": [{"product_id": "p01", "quantity": 1}]},
            headers=auth(keys["b0"]),
        )
        # the 0.3 s lock timeout ended the wait, not the 20 s statement timeout (nor the holder, who never
        # lets go): a bound of 2 s was missed by 0.02 s once in a loaded `make test`
        assert time.perf_counter() - start < 6
    finally:
        holder.rollback()
        holder.close()
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["code"] == "unavailable"
    assert client.get("/ready").json()["database"] == "up"  # busy, not gone
    assert invariants(factory)["orders"] == 0
    factory.kw["bind"].dispose()


def test_connect_timeout_gives_up_on_a_server_that_never_answers():
    server = FrozenServer(FROZEN_DB_PORT)  # accepts the TCP connection, never speaks PostgreSQL
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{FROZEN_DB_PORT}/test", connect_timeout=2)
    start = time.perf_counter()
    try:
        with pytest.raises(exc.OperationalError), engine.connect():
            pass
        assert time.perf_counter() - start < 6
    finally:
        engine.dispose()
        server.close()


async def _hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _trickle(sock: socket.socket, data: bytes) -> float:
    """Send `data` a byte every 0.1 s until the server closes the connection: how long that took."""
    start = time.perf_counter()
    sock.settimeout(0.1)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(100) == b"":
                break
        except TimeoutError:
            continue
        except OSError:  # reset: closed
            break
    else:
        return float("inf")
    return time.perf_counter() - start


def test_connections_that_never_finish_their_headers_are_closed(http_protocol):
    with running_server(_hello, HTTP_PORT, timeout_keep_alive=1, http=http_protocol):
        with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            start = time.perf_counter()
            assert sock.recv(100) == b""  # closed by the server
            assert 0.8 < time.perf_counter() - start < 3
        with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a prompt client is served
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            # then trickles its next request's headers: the bytes do not extend the deadline
            assert 0.7 < _trickle(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20) < 2


BIG = b"x" * (16 << 20)


async def _big(scope, receive, send):
    """16 MB answered to every request: more than the socket buffers hold."""
    if scope["type"] == "http":
        headers = [(b"content-length", str(len(BIG)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BIG})


def test_a_client_that_stops_reading_its_answer_is_dropped_with_what_it_held(http_protocol):
    """uvicorn waits without limit for a client to read (flow control); the keep-alive timer's close waits
    for the buffer to drain first: a client that asked for a large answer and read nothing held the
    connection and the answer in memory for ever (16 MB, still held after 15 s). It now has the header
    timeout to read again; a client that reads is served whole."""
    with running_server(_big, HTTP_PORT, timeout_keep_alive=1, http=http_protocol) as server:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", HTTP_PORT))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            held = []
            for _ in range(50):  # 5 s at most
                held.append(len(server.server_state.connections))
                if 1 in held and not held[-1]:
                    break
                time.sleep(0.1)
            assert 1 in held and held[-1] == 0, held  # was held (and its 16 MB) for ever
        with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := sock.recv(1 << 20):
                received += chunk
                time.sleep(0.01)  # a slow reader that keeps reading is not cut off
            assert received.endswith(BIG)
