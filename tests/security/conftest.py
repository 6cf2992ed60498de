"""The attacks of issue 9 replayed through the HTTP API against the tiny marketplace of tests/serving, and
the concurrency cases against the commerce fixtures (SQLite and PostgreSQL)."""

from tests.commerce.conftest import engine, factory, market, sqlite_templates  # noqa: F401
from tests.resilience.conftest import http_protocol, open_client  # noqa: F401
from tests.serving.conftest import (  # noqa: F401
    client,
    keys,
    make_client,
    session_factory,
    settings,
    source,
    template_db,
)
from tests.serving.test_logging import log_lines  # noqa: F401
