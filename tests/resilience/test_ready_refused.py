"""PostgreSQL refusing every new connection while the API's pool holds none in use: nothing can be served,
so `/ready` must say so at once (503, `database: unavailable`), neither hang nor 500. Refused at TCP (the
server down, simulated by an engine on a closed port: the shared server keeps running) it did already.
Refused for the connection limit ("too many connections for role", SQLSTATE 53300, a role's limit
lowered to 0) it answered 200 `degraded`: the limit is taken for "busy, the pool's connections serve",
which holds only while some are in use (test_connection_limit.py); with none, it is an outage, for
`/ready` and for the requests refused meanwhile (503 with `Retry-After: 5`, was 1)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import make_url

from commerce.db import make_engine, make_session_factory
from serving.resilience import AUTH_CONNECTIONS, BACKGROUND_CONNECTIONS
from tests.resilience.conftest import POOL_SLOTS, fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth

CLOSED_PORT = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens: connect() is refused
QUICKLY = 2.0  # seconds: the probe's one connect, refused at once


def _engine(url: str):
    return make_engine(
        url,
        connect_timeout=2,
        statement_timeout=5,
        pool_size=POOL_SLOTS + AUTH_CONNECTIONS + BACKGROUND_CONNECTIONS,
        max_overflow=0,
        pool_timeout=2,
    )


def _assert_unavailable_quickly(client) -> None:
    client.app.state.serving.db_health._checked_at = -1e9  # the next /ready probes
    start = time.perf_counter()
    ready = client.get("/ready")
    assert time.perf_counter() - start < QUICKLY
    assert ready.status_code == 503, ready.text
    assert ready.json()["ready"] is False and ready.json()["database"] == "unavailable", ready.text


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ready_is_503_unavailable_at_once_when_the_server_refuses_tcp_connections(
    database_url, tmp_path, open_client
):
    factory = seeded_factory(database_url)
    client = open_client(fault_settings(tmp_path), factory)
    assert client.get("/ready").status_code == 200  # catalog loaded, database up
    refused = _engine(CLOSED_PORT)
    client.app.state.serving.session_factory = make_session_factory(refused)  # the server gone
    _assert_unavailable_quickly(client)
    _assert_unavailable_quickly(client)  # and again on the next probe, the pool still empty
    refused.dispose()
    factory.kw["bind"].dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ready_is_503_unavailable_when_the_limit_refuses_every_connection_and_none_is_in_use(
    database_url, limited_role, tmp_path, open_client
):
    factory, role = limited_role
    admin = factory.kw["bind"]
    keys = make_keys(factory)
    engine = _engine(make_url(database_url).set(username=role).render_as_string(hide_password=False))
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    orders = lambda: client.get("/v1/shoppers/s1/orders", headers=auth(keys["s1"]))  # noqa: E731
    assert orders().status_code == 200  # the key is cached
    assert client.get("/ready").status_code == 200
    engine.dispose()  # the pool holds no connection: none in use, none to hand out
    with admin.begin() as conn:  # and the server takes no new one for the role
        conn.exec_driver_sql(f"ALTER ROLE {role} CONNECTION LIMIT 0")
    assert engine.pool.checkedout() == 0

    refused = orders()
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5", refused.text  # was 1: busy
    _assert_unavailable_quickly(client)  # was 200 `degraded`: nothing could be served

    with admin.begin() as conn:
        conn.exec_driver_sql(f"ALTER ROLE {role} CONNECTION LIMIT 5")
    client.app.state.serving.db_health._checked_at = -1e9
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "up", ready.text
    assert orders().status_code == 200
    engine.dispose()
