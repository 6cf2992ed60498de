"""commerce.db.make_engine: the client-side bound on PostgreSQL waits rests on a private psycopg name."""

from __future__ import annotations

import psycopg
import pytest

from commerce.db import make_engine

URL = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # never connected to: the engine is only built


def test_a_psycopg_without_the_wait_timeout_error_fails_when_the_engine_is_made(monkeypatch):
    make_engine(URL, statement_timeout=1).dispose()
    monkeypatch.delattr(psycopg.errors, "_WaitTimeout")
    with pytest.raises(AttributeError, match="_WaitTimeout"):  # was: only inside the first frozen wait
        make_engine(URL, statement_timeout=1)
    make_engine(URL).dispose()  # no statement timeout, no client-side bound: the name is not needed
