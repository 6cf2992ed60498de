"""`crosscart doctor` says what is wrong with a deployment and how to fix it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from commerce import migrate
from crosscart.cli import app
from crosscart.settings import get_settings


def _run(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(f"CROSSCART_{name.upper()}", value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["doctor", "--json"])
    finally:
        get_settings.cache_clear()
    return result, {c["name"]: c for c in map(json.loads, result.stdout.splitlines())}


def test_a_fresh_deployment_is_told_what_to_fix(tmp_path, monkeypatch):
    result, checks = _run(
        monkeypatch, data_dir=str(tmp_path), redis_url="", mlflow_uri=f"sqlite:///{tmp_path}/m.db"
    )
    assert result.exit_code == 1
    assert checks["database"]["status"] == "fail" and "crosscart db upgrade" in checks["database"]["fix"]
    assert checks["identity key"]["status"] == "fail"
    assert checks["mlflow"]["status"] == "fail" and "missing" in checks["mlflow"]["detail"]
    assert "train a model" in checks["mlflow"]["fix"] and not (tmp_path / "m.db").exists()  # not created
    assert checks["redis"]["status"] == "warn" and checks["data dir"]["status"] == "ok"
    assert "each admits limit // 1, CROSSCART_RATE_LIMIT_REPLICAS" in checks["redis"]["detail"]


def test_a_migrated_database_and_a_real_key_pass_those_checks(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    migrate.upgrade(url)
    result, checks = _run(
        monkeypatch, data_dir=str(tmp_path), database_url=url, identity_key="k" * 40,
        redis_url="redis://127.0.0.1:1/0", mlflow_uri=f"sqlite:///{tmp_path}/m.db",
    )  # fmt: skip
    assert checks["database"]["status"] == "ok" and "schema at" in checks["database"]["detail"]
    assert checks["identity key"]["status"] == "ok"
    assert checks["redis"]["status"] == "fail"  # configured but nothing listens there
    assert result.exit_code == 1


def test_identities_under_a_key_the_keyring_forgot_fail(tmp_path, monkeypatch):
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.identity import Keyring
    from commerce.services import shoppers
    from tests.commerce.conftest import make_id_number

    url = f"sqlite:///{tmp_path}/db.sqlite"
    migrate.upgrade(url)
    with transaction(make_session_factory(make_engine(url))) as s:
        shoppers.create_shopper(s, "s1", "Zhejiang")
        shoppers.register_identity(s, "s1", "Name", make_id_number(1), keyring=Keyring("a" * 40))
    env = {
        "data_dir": str(tmp_path),
        "database_url": url,
        "identity_key": "b" * 40,
        "identity_key_version": "2",
    }
    _, forgot = _run(monkeypatch, **env)
    assert forgot["identity key versions"]["status"] == "fail"
    assert "1 under version 1" in forgot["identity key versions"]["detail"]
    _, kept = _run(monkeypatch, **env, identity_previous_keys=json.dumps({"1": "a" * 40}))
    check = kept["identity key versions"]
    assert check["status"] == "ok" and "current version 2; still 1 under version 1" in check["detail"]
    _, bad = _run(monkeypatch, **env, identity_previous_keys=json.dumps({"3": "a" * 40}))
    assert bad["identity key versions"]["status"] == "fail"


def test_experiments_running_past_the_start_caps_are_a_warning(tmp_path, monkeypatch):
    """37 experiments running, 11 aliases (started with no cap checked): doctor said nothing, and every
    replica loaded them all. It now warns, naming the 5 the replicas leave out and how to fix it."""
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.services import experiments
    from tests.security.test_experiment_caps import LEFT_OUT, running_past_both_caps

    url = f"sqlite:///{tmp_path}/db.sqlite"
    migrate.upgrade(url)
    env = {"data_dir": str(tmp_path), "database_url": url, "identity_key": "b" * 40}
    _, within = _run(monkeypatch, **env)
    assert within["experiments"]["status"] == "ok"
    factory = make_session_factory(make_engine(url))
    running_past_both_caps(factory)
    _, past = _run(monkeypatch, **env)
    check = past["experiments"]
    assert check["status"] == "warn" and "37 experiments are running" in check["detail"], check
    assert "replicas serve 32" in check["detail"] and all(repr(n) in check["detail"] for n in LEFT_OUT)
    assert "crosscart experiment stop" in check["fix"]
    with transaction(factory) as s:
        for name in LEFT_OUT:
            experiments.stop_experiment(s, name)
    _, stopped = _run(monkeypatch, **env)
    assert stopped["experiments"]["status"] == "ok" and "32 running" in stopped["experiments"]["detail"]


def test_redis_dropping_the_connection_at_subscribe_is_a_warning_and_doctor_goes_on(tmp_path, monkeypatch):
    """Redis answering PING, then the connection reset or timed out at the revocation feed's SUBSCRIBE:
    doctor crashed with a traceback and the checks after Redis never ran. It is a warning now."""
    import redis

    def dropped(self, *args, **kwargs):
        raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(redis.client.PubSub, "subscribe", dropped)
    result, checks = _run(
        monkeypatch, data_dir=str(tmp_path), redis_url="redis://127.0.0.1:6379/0",
        mlflow_uri=f"sqlite:///{tmp_path}/m.db",
    )  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert checks["redis"]["status"] == "warn" and "Connection reset by peer" in checks["redis"]["detail"]
    assert checks["data dir"]["status"] == "ok"  # checked after Redis
