"""PostgreSQL refusing new connections ("too many connections for role", SQLSTATE 53300, at connect) while
the pool still holds working ones: a request that needed a new connection was taken for an outage (503
with `Retry-After: 5`, "database unavailable" logged, `/ready` 503 "unavailable" until the next success,
which logged "database back"). It is now busy: 503 with `Retry-After: 1`, requests on pooled connections
go on, and `/ready` stays 200 saying `degraded`."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from commerce.db import make_engine, make_session_factory
from serving.resilience import AUTH_CONNECTIONS, BACKGROUND_CONNECTIONS
from tests.resilience.conftest import POOL_SLOTS, fault_settings, make_keys
from tests.serving.conftest import auth


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_new_connections_refused_for_the_role_limit_are_busy_and_ready_says_degraded(
    database_url, limited_role, tmp_path, open_client, caplog
):
    factory, role = limited_role
    admin = factory.kw["bind"]
    url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
    engine = make_engine(
        url,
        pool_size=POOL_SLOTS + AUTH_CONNECTIONS + BACKGROUND_CONNECTIONS,
        max_overflow=0,
        pool_timeout=5,
        statement_timeout=20,
    )
    keys = make_keys(factory)
    client = open_client(fault_settings(tmp_path), make_session_factory(engine))
    orders = lambda: client.get("/v1/shoppers/s1/orders", headers=auth(keys["s1"]))  # noqa: E731
    assert orders().status_code == 200  # the pool now holds connections, the key is cached
    with admin.begin() as conn:  # the limit: exactly the connections the role has open
        count = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE usename = :r"), {"r": role})
        conn.exec_driver_sql(f"ALTER ROLE {role} CONNECTION LIMIT {count.scalar()}")
    assert orders().status_code == 200  # on a pooled connection

    held = [engine.connect() for _ in range(engine.pool.checkedin())]  # every pooled one in use
    start = time.perf_counter()
    refused = orders()  # needs a new connection: "too many connections for role"
    assert refused.status_code == 503 and time.perf_counter() - start < 2, refused.text
    assert refused.headers["retry-after"] == "1"  # was 5, as for an outage
    client.app.state.serving.db_health._checked_at = -1e9  # the next /ready probes (refused too)
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "degraded", ready.text  # was 503
    for conn in held:
        conn.close()

    assert orders().status_code == 200
    client.app.state.serving.db_health._checked_at = -1e9
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "degraded"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in lines if "database unavailable" in m], lines  # not an outage
    assert sum("refuses new connections" in m for m in lines) == 1
    engine.dispose()
