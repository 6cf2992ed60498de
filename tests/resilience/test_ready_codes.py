"""Session 10: `/ready` answers anyone, so each failing check says one stable word, never the exception's
text (it carried file paths, SQL, host names and the registry's URL); the whole message goes to the log and
to admins (`GET /v1/ready/details`)."""

from __future__ import annotations

import logging
import pickle

import pytest
from sqlalchemy import exc

from serving.precomputed import BatchMissing
from serving.refresh import failure_code
from tests.resilience.conftest import fault_settings, make_keys, recommender_source, seeded_factory
from tests.serving.conftest import auth
from training.registry import RegistryUnreadable

SECRETS = ("/srv/crosscart/secret", "s3cret", "mlflow.internal", "SELECT", "10.0.0.7")


def _failing(error: BaseException):
    def load():
        raise error

    return load


class UnreachableRegistry:
    """A registry whose every check fails with a message naming its address and password."""

    def champion(self):
        raise RuntimeError("API request to http://admin:s3cret@mlflow.internal:5000/api/2.0 failed")


def test_ready_says_one_word_per_failing_check_and_logs_the_message(tmp_path, open_client, caplog):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = make_keys(factory)
    source = recommender_source()
    client = open_client(
        fault_settings(tmp_path, precomputed_dir=str(tmp_path / "lists")), factory, model_source=source
    )
    state = client.app.state.serving
    down = exc.OperationalError(
        "SELECT * FROM products", {}, Exception("could not connect to server at 10.0.0.7, password s3cret")
    )
    state.catalog._loader = _failing(down)
    state.precomputed._loader = _failing(
        pickle.UnpicklingError("part /srv/crosscart/secret/part-0 cut short")
    )
    source.alias, source.broken = "2", {"2"}  # ScriptedSource: OSError naming the artifact
    with caplog.at_level(logging.WARNING):
        assert not state.catalog.refresh() and not state.precomputed.refresh()
        state.models.refresh()
        state.models.source = UnreachableRegistry()
        state.models.refresh()
    ready = client.get("/ready")
    assert ready.status_code == 200  # the loaded catalog and model keep serving
    body = ready.json()
    assert body["catalog_error"] == "unavailable" and body["precomputed_error"] == "corrupt"
    assert body["model_alias_error"] == "load-failed" and body["registry_error"] == "unavailable"
    assert not any(secret in ready.text for secret in SECRETS), ready.text
    logged = caplog.text  # what an operator reads instead
    assert "10.0.0.7" in logged and "/srv/crosscart/secret" in logged and "mlflow.internal" in logged

    details = client.get("/v1/ready/details", headers=auth(keys["admin"]))
    assert details.status_code == 200
    said = details.json()
    assert "10.0.0.7" in said["catalog_error"] and "/srv/crosscart/secret" in said["precomputed_error"]
    assert "mlflow.internal" in said["registry_error"] and said["model_alias_version"] == "2"
    assert "s3cret" not in said["registry_error"]  # the URL's password: an admin key is not the servers'
    assert "http://[redacted]@mlflow.internal:5000" in said["registry_error"]
    assert said["model_alias_error"] == "OSError: artifact of version 2 is corrupt"
    for who in ("marketer", "storefront", "s1"):
        assert client.get("/v1/ready/details", headers=auth(keys[who])).status_code == 403
    assert client.get("/v1/ready/details").status_code == 401


def test_a_registry_never_reached_is_the_fallback_reason_without_its_address(tmp_path, open_client):
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    client = open_client(fault_settings(tmp_path), factory, model_source=UnreachableRegistry())
    ready = client.get("/ready").json()
    assert ready["registry_error"] == "unavailable" and ready["fallback_reason"] == "registry unavailable"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (FileNotFoundError(2, "No such file", "/srv/x"), "missing"),
        (BatchMissing("the published batch is gone from Redis"), "missing"),
        (KeyError("stamp"), "failed"),  # a loader's bug or malformed input: was `missing`
        (IndexError("list index out of range"), "failed"),
        (PermissionError(13, "Permission denied", "/srv/x"), "unreadable"),
        (ConnectionError("refused"), "unavailable"),
        (exc.OperationalError("SELECT 1", {}, Exception("gone")), "unavailable"),
        # a new connection refused for the role's limit: busy for requests, but this load did not happen
        (exc.OperationalError("", {}, Exception('FATAL:  too many connections for role "r"')), "unavailable"),
        (ValueError("Parquet magic bytes not found"), "corrupt"),
        (EOFError(), "corrupt"),
        (RegistryUnreadable("the registry database file is missing", "/srv/mlflow.db", "missing"), "missing"),
        (RegistryUnreadable("the registry database file is empty", "/srv/mlflow.db"), "corrupt"),
        (RuntimeError("anything else"), "failed"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_failure_code(error, code):
    assert failure_code(error) == code


def test_ready_is_503_while_the_demos_load_into_its_database_is_unfinished(
    tmp_path, database_url, open_client
):
    """A server started over a database the demo began loading and never finished (a `make run` stopped
    while loading, then `crosscart serve`'s refusal bypassed, or a demo rerun stopped beside a running
    server) says so on /ready, not ready, until the demo's rerun finishes the load; another database's
    unfinished load (the demo's, beside production's) changes nothing."""
    from crosscart.demo_state import STATE_FILE, StepLog

    factory = seeded_factory(database_url)
    client = open_client(fault_settings(tmp_path, database_url=database_url), factory)
    log = StepLog(tmp_path / STATE_FILE)
    log.load_begins(f"sqlite:///{tmp_path / 'demo.db'}")
    whole = client.get("/ready")
    assert whole.status_code == 200 and whole.json()["demo_load"] is None

    log.load_begins(database_url)
    partial = client.get("/ready")
    assert partial.status_code == 503
    assert partial.json()["demo_load"] == "unfinished" and partial.json()["ready"] is False

    log.load_done("fp", database_url)
    assert client.get("/ready").status_code == 200
