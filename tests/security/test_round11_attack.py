"""Round 11: a second hostile pass on the tiny marketplace of tests/serving, on what the first did not reach
(the console, experiments, models, the audit log). Each test failed before its fix."""

from __future__ import annotations

import pytest

from tests.serving.conftest import auth
from tests.serving.test_console import CSRF, sign_in


def _audited(client, admin: dict, action: str) -> list[tuple]:
    """(target_id, actor_role, actor_key_id, detail) of every `action` entry, oldest first."""
    page = client.get("/v1/audit-log", params={"action": action}, headers=admin).json()
    fields = ("target_id", "actor_role", "actor_key_id", "detail")
    return [tuple(e[f] for f in fields) for e in reversed(page["items"])]


def _register_version(tracking_uri: str, name: str) -> str:
    """A version of `name` in the registry (its run holds no model: the alias move is what is tested)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if not client.search_registered_models(filter_string=f"name='{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, "file:///nowhere/model").version)


def test_moving_a_served_models_alias_is_audited(make_client, settings, keys, tracking_uri):
    """Promoting (or rolling back) the model every shopper is served left no audit entry, through the API
    or the console: an admin key could swap in any registered version and nobody could say who did."""
    client = make_client(settings=settings.model_copy(update={"mlflow_uri": tracking_uri}))
    admin = auth(keys["admin"])
    name = settings.model_name
    v1, v2 = _register_version(tracking_uri, name), _register_version(tracking_uri, name)
    moved = client.put(f"/v1/models/{name}/aliases/challenger", json={"version": v2}, headers=admin)
    assert moved.status_code == 204, moved.text
    missing = client.put(f"/v1/models/{name}/aliases/champion", json={"version": "9"}, headers=admin)
    assert missing.status_code == 404  # nothing moved: nothing audited
    token = sign_in(client, keys["admin"])
    promoted = client.post(
        f"/console/models/{name}/promote", data={"csrf_token": token, "version": v1}, follow_redirects=False
    )
    assert promoted.status_code == 303, promoted.text
    entries = _audited(client, admin, "model.alias_moved")
    assert [(target, role, detail) for target, role, _, detail in entries] == [
        (name, "admin", {"alias": "challenger", "version": v2}),
        (name, "admin", {"alias": settings.model_alias, "version": v1}),
    ]
    assert all(key_id is not None for _, _, key_id, _ in entries)


def test_starting_and_stopping_an_experiment_is_audited(client, keys):
    """Starting or stopping an experiment changes what every shopper in its traffic is shown, and any
    marketer or data scientist may do either to anyone's experiment; neither left an audit entry."""
    marketer, admin = auth(keys["marketer"]), auth(keys["admin"])
    name = "e" * 100  # longer than an audit target id (64): the entry names the experiment by its id
    variants = [{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}]
    made = client.post("/v1/experiments", json={"name": name, "variants": variants}, headers=marketer)
    assert made.status_code == 201, made.text
    assert client.post(f"/v1/experiments/{name}/start", headers=marketer).status_code == 200
    stopped = client.post(f"/v1/experiments/{name}/stop", headers=auth(keys["data_scientist"]))
    assert stopped.status_code == 200, stopped.text
    assert client.post(f"/v1/experiments/{name}/stop", headers=marketer).status_code == 409  # not audited
    started = _audited(client, admin, "experiment.started")
    ended = _audited(client, admin, "experiment.stopped")
    assert [(role, detail) for _, role, _, detail in started] == [("marketer", {"name": name})]
    assert [(role, detail) for _, role, _, detail in ended] == [("data_scientist", {"name": name})]
    assert started[0][0] == ended[0][0] and started[0][2] != ended[0][2]  # one experiment, two keys


def test_creating_changing_and_retiring_a_coupon_is_audited(client, keys):
    """A coupon is money a marketer key gives away: one needing no grant, 50 off for anyone who checks
    out, was created, raised or ended (the console's forms call the same routes) without an audit entry."""
    marketer, admin = auth(keys["marketer"]), auth(keys["admin"])
    terms = {"name": "Open", "kind": "amount_off", "value": "50", "min_spend": "60", "requires_grant": False}
    made = client.post("/v1/coupons", json={**terms, "coupon_id": "open50"}, headers=marketer)
    assert made.status_code == 201, made.text
    assert client.patch("/v1/coupons/open50", json={"value": "55"}, headers=marketer).status_code == 200
    assert client.post("/v1/coupons/open50/retire", headers=marketer).status_code == 200
    actions = ("coupon.created", "coupon.changed", "coupon.retired")
    entries = {action: _audited(client, admin, action) for action in actions}
    assert all(len(found) == 1 for found in entries.values()), entries
    assert {found[0][:2] for found in entries.values()} == {("open50", "marketer")}
    created = entries["coupon.created"][0][3]
    assert (created["kind"], created["value"], created["requires_grant"]) == ("amount_off", "50", False)
    assert entries["coupon.changed"][0][3] == {"value": "55"}


def _variants(prefix: str, count: int) -> list[dict]:
    return [{"name": f"v{j}", "weight": 1, "config": {"model_alias": f"{prefix}-{j}"}} for j in range(count)]


def test_running_experiments_serve_a_bounded_number_of_model_aliases(client, keys):
    """Each alias a running experiment serves is a model store on every replica (a model in memory, a
    thread polling the registry); a marketer key starting experiments of 20 variants, each naming an
    alias of its own, made the replica hold 80 stores after 4 starts. Now a start that would take the
    running experiments past MAX_EXPERIMENT_ALIASES is 409 and leaves the experiment a draft."""
    marketer, aliases = auth(keys["marketer"]), client.app.state.serving.aliases
    experiments = {"wide": _variants("w", 20), "six": _variants("s", 6), "three": _variants("t", 3)}
    for name, variants in experiments.items():
        made = client.post("/v1/experiments", json={"name": name, "variants": variants}, headers=marketer)
        assert made.status_code == 201, made.text
    refused = client.post("/v1/experiments/wide/start", headers=marketer)
    assert refused.status_code == 409 and "at most 8" in refused.json()["detail"], refused.text
    assert client.get("/v1/experiments/wide", headers=marketer).json()["status"] == "draft"
    assert client.post("/v1/experiments/six/start", headers=marketer).status_code == 200
    assert client.post("/v1/experiments/three/start", headers=marketer).status_code == 409  # 6 + 3
    assert len(aliases.stores) == 6
    assert client.post("/v1/experiments/six/stop", headers=marketer).status_code == 200
    assert client.post("/v1/experiments/three/start", headers=marketer).status_code == 200
    assert sorted(aliases.stores) == ["t-0", "t-1", "t-2"]


def _console_sign_in(client, key: str):
    """One sign-in attempt through the console's form (a fresh browser: its CSRF token from the page)."""
    client.cookies.clear()
    token = CSRF.search(client.get("/console/sign-in").text).group(1)
    form = {"api_key": key, "csrf_token": token, "next": "/console"}
    return client.post("/console/sign-in", data=form, follow_redirects=False)


def test_the_console_sign_in_counts_failed_keys_as_the_api_does(make_client, settings, keys):
    """An address that failed 3 key checks (the limit here) gets 429 from the API for any key it has not
    used, yet the console's sign-in form went on checking keys for it (60 a minute, the anonymous rate),
    and its failures were not counted: the failed-key throttle was bypassed by signing in instead."""
    client = make_client(settings=settings.model_copy(update={"auth_failures_per_minute": 3}))
    for attempt in range(3):
        assert _console_sign_in(client, f"cc_wrong{attempt}").status_code == 401
    throttled = client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"]))
    assert throttled.status_code == 429, throttled.text  # the console's failures count for the API
    refused = _console_sign_in(client, keys["admin"])  # a right key too, until the minute is over
    assert refused.status_code == 401 and "Too many attempts" in refused.text
    assert client.get("/console", follow_redirects=False).status_code == 303  # not signed in


def test_the_api_s_failed_keys_close_the_console_sign_in_too(make_client, settings, keys):
    """The one count, the other way round: an address the API throttles cannot sign in to try keys."""
    client = make_client(settings=settings.model_copy(update={"auth_failures_per_minute": 3}))
    assert _console_sign_in(client, keys["admin"]).status_code == 303  # under the limit: signed in
    for attempt in range(3):
        assert client.get("/v1/shoppers/s1/orders", headers=auth(f"cc_wrong{attempt}")).status_code == 401
    assert "Too many attempts" in _console_sign_in(client, keys["admin"]).text


def _champion(tracking_uri: str, name: str) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(
            MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, "champion").version
        )
    except MlflowException:
        return None


@pytest.mark.slow  # the MLflow registry: 30 s
def test_an_alias_move_the_database_cannot_audit_does_not_move(make_client, settings, keys, tracking_uri):
    """The audit entry is written before the registry is touched: with the database refusing the entry
    (down as the promotion is sent), the alias stays where it was and the promotion answers 503. It moved
    first, then the audit failed: a new champion served to every shopper with no entry saying who."""
    from sqlalchemy import event

    from tests.console.test_form_failures import lost

    client = make_client(settings=settings.model_copy(update={"mlflow_uri": tracking_uri}))
    admin = auth(keys["admin"])
    name = settings.model_name
    v1, v2 = _register_version(tracking_uri, name), _register_version(tracking_uri, name)
    assert (
        client.put(f"/v1/models/{name}/aliases/champion", json={"version": v1}, headers=admin).status_code
        == 204
    )
    engine = client.app.state.serving.session_factory.kw["bind"]

    def refuse_audit(conn, cursor, statement, *args):
        if "audit" in statement.lower() and statement.lstrip().upper().startswith("INSERT"):
            raise lost()

    event.listen(engine, "before_cursor_execute", refuse_audit)
    try:
        refused = client.put(f"/v1/models/{name}/aliases/champion", json={"version": v2}, headers=admin)
    finally:
        event.remove(engine, "before_cursor_execute", refuse_audit)
    assert refused.status_code == 503, refused.text
    assert _champion(tracking_uri, name) == v1


@pytest.mark.slow
def test_an_alias_move_whose_audit_does_not_commit_is_moved_back(
    make_client, settings, keys, tracking_uri, monkeypatch
):
    """The registry is no part of the database's transaction: should the commit fail after the move,
    the alias goes back to the version it pointed at, so no move stands unaudited."""
    from sqlalchemy import exc
    from sqlalchemy.orm import Session

    from tests.console.test_form_failures import lost

    client = make_client(settings=settings.model_copy(update={"mlflow_uri": tracking_uri}))
    admin = auth(keys["admin"])
    name = settings.model_name
    v1, v2 = _register_version(tracking_uri, name), _register_version(tracking_uri, name)
    assert (
        client.put(f"/v1/models/{name}/aliases/champion", json={"version": v1}, headers=admin).status_code
        == 204
    )
    commit = Session.commit

    def fails(self):
        if _champion(tracking_uri, name) == v2:  # the move's own commit
            raise exc.OperationalError("COMMIT", {}, lost())
        return commit(self)

    monkeypatch.setattr(Session, "commit", fails)
    refused = client.put(f"/v1/models/{name}/aliases/champion", json={"version": v2}, headers=admin)
    monkeypatch.setattr(Session, "commit", commit)
    assert refused.status_code == 503, refused.text
    assert _champion(tracking_uri, name) == v1
    assert [d["version"] for *_, d in _audited(client, admin, "model.alias_moved")] == [v1]
