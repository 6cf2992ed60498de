"""Round 12: experiments and the audit log, attacked by a logged-in experimenter, marketer or merchant, by
two clients at once and from the command line. Each test failed before its fix."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from typer.testing import CliRunner

from commerce.db import transaction
from commerce.services import experiments as store
from commerce.services.access import create_api_key
from crosscart.cli import app
from crosscart.settings import get_settings
from serving.ab import MAX_EXPERIMENT_ALIASES, MAX_RUNNING_EXPERIMENTS
from tests.search.conftest import api, shop  # noqa: F401  (the shop's app on SQLite and PostgreSQL)
from tests.security.test_round11_attack import _audited
from tests.serving.conftest import auth, grant_only_campaign

RACERS = 4
PLAIN = [{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}]


def _aliased(prefix: str, count: int) -> list[dict]:
    """`count` variants, each serving a model alias of its own."""
    return [{"name": f"v{j}", "weight": 1, "config": {"model_alias": f"{prefix}-{j}"}} for j in range(count)]


def _running(factory, names_variants: dict[str, list[dict]]) -> None:
    """Experiments created and started straight in the database (the setting an attack starts from)."""
    with transaction(factory) as s:
        for name, variants in names_variants.items():
            store.create_experiment(s, name, [(v["name"], v["weight"], v.get("config")) for v in variants])
            store.start_experiment(s, name)


def test_running_experiments_are_bounded_and_each_cap_says_which(client, keys, session_factory):
    """Nothing bounded how many experiments run at once: every one is assigned on every recommendation
    page and refreshed into every replica, and a marketer key could start thousands. The 33rd is now 409
    `too_many_experiments` (and stays a draft); the alias cap answers its own code,
    `too_many_model_aliases`, instead of the generic `conflict`."""
    marketer = auth(keys["marketer"])
    wide = client.post(
        "/v1/experiments", json={"name": "wide", "variants": _aliased("w", 9)}, headers=marketer
    )
    assert wide.status_code == 201, wide.text
    refused = client.post("/v1/experiments/wide/start", headers=marketer)
    assert refused.status_code == 409 and refused.json()["code"] == "too_many_model_aliases", refused.text
    _running(session_factory, {f"run{i}": PLAIN for i in range(MAX_RUNNING_EXPERIMENTS - 1)})
    for name in ("last", "one-more"):
        made = client.post("/v1/experiments", json={"name": name, "variants": PLAIN}, headers=marketer)
        assert made.status_code == 201, made.text
    assert client.post("/v1/experiments/last/start", headers=marketer).status_code == 200  # the 32nd
    over = client.post("/v1/experiments/one-more/start", headers=marketer)
    assert over.status_code == 409 and over.json()["code"] == "too_many_experiments", over.text
    assert client.get("/v1/experiments/one-more", headers=marketer).json()["status"] == "draft"
    assert client.post("/v1/experiments/run0/stop", headers=marketer).status_code == 200
    assert client.post("/v1/experiments/one-more/start", headers=marketer).status_code == 200


def test_the_command_line_starts_within_the_same_caps(database_url, engine, monkeypatch, tmp_path):
    """`crosscart experiment start` called the store directly: the API's alias cap was checked in the
    route only, so the command line started a 9th alias (and any number of experiments). It starts through
    the same `serving.ab.start_experiment`: refused, it exits 2 with one `error:` line and changes nothing."""
    from commerce.db import make_session_factory

    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    factory = make_session_factory(engine)
    _running(factory, {"six": _aliased("s", 6)})
    with transaction(factory) as s:
        store.create_experiment(s, "three", [(v["name"], 1, v["config"]) for v in _aliased("t", 3)])
        store.create_experiment(s, "plain", [("control", 1), ("treatment", 1)])
    runner = CliRunner()
    try:
        aliases = runner.invoke(app, ["experiment", "start", "three"])
        _running(factory, {f"run{i}": PLAIN for i in range(MAX_RUNNING_EXPERIMENTS - 1)})  # 32 running
        running = runner.invoke(app, ["experiment", "start", "plain"])
    finally:
        get_settings.cache_clear()
    for refused, why in ((aliases, f"at most {MAX_EXPERIMENT_ALIASES}"), (running, "at most 32 at once")):
        assert refused.exit_code == 2, refused.output
        lines = refused.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0], refused.output
    with transaction(factory) as s:
        assert store.get_experiment(s, "three").status == "draft"
        assert store.get_experiment(s, "plain").status == "draft"


def _race(api, urls: list[str], headers: dict) -> list:  # noqa: F811
    """POST to `urls` at once (threads released together by a barrier); their responses."""
    barrier = threading.Barrier(len(urls))

    def send(url):
        barrier.wait()
        return api.post(url, headers=headers)

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return list(pool.map(send, urls))


def test_concurrent_starts_cannot_together_pass_the_caps(api, shop):  # noqa: F811
    """Two starts at once each read the running experiments before the other committed, both passed the
    cap and together went past it: on PostgreSQL 2 to 4 of 4 racers, each adding 2 aliases to the 6
    served, won (up to 14 served). Starts are serialized now (an advisory lock; SQLite's BEGIN IMMEDIATE
    already did): exactly one racer wins, the others are 409, for either cap."""
    with transaction(shop) as s:
        admin = auth(create_api_key(s, "admin")[1])
    _running(shop, {"six": _aliased("s", 6)})
    cases = {
        "too_many_model_aliases": lambda i: _aliased(f"r{i}", 2),
        "too_many_experiments": lambda i: PLAIN,
    }
    for code, variants in cases.items():
        names = [f"{code}-{i}" for i in range(RACERS)]
        with transaction(shop) as s:
            for i, name in enumerate(names):
                store.create_experiment(s, name, [(v["name"], 1, v.get("config")) for v in variants(i)])
        if code == "too_many_experiments":  # the aliases' winner stopped; 31 running, 4 racing for the 32nd
            with transaction(shop) as s:
                for exp in store.running_configs(s):
                    if exp["name"].startswith("too_many_model_aliases"):
                        store.stop_experiment(s, exp["name"])
            _running(shop, {f"run{i}": PLAIN for i in range(MAX_RUNNING_EXPERIMENTS - 2)})
        responses = _race(api, [f"/v1/experiments/{n}/start" for n in names], admin)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * (RACERS - 1), (code, [r.text for r in responses])
        assert all(r.json()["code"] == code for r in responses if r.status_code == 409), code
    with transaction(shop) as s:
        assert len(store.running_configs(s)) == MAX_RUNNING_EXPERIMENTS


def test_creating_an_experiment_is_audited(client, keys):
    """Starting and stopping were audited, creating was not: the draft's variant configs (which models,
    interleaving, exploration) are what a start later serves, and who defined them left no trace."""
    marketer, admin = auth(keys["marketer"]), auth(keys["admin"])
    variants = [
        {"name": "control", "weight": 1},
        {"name": "new", "weight": 1, "config": {"model_alias": "cand"}},
    ]
    made = client.post("/v1/experiments", json={"name": "promo", "variants": variants}, headers=marketer)
    assert made.status_code == 201, made.text
    again = client.post("/v1/experiments", json={"name": "promo", "variants": variants}, headers=marketer)
    assert again.status_code == 409  # refused: nothing audited
    entries = _audited(client, admin, "experiment.created")
    assert len(entries) == 1, entries
    _, role, key_id, detail = entries[0]
    assert (role, key_id is not None, detail["name"]) == ("marketer", True, "promo")
    assert detail["variants"][1] == {"name": "new", "weight": 1.0, "config": {"model_alias": "cand"}}


def test_a_merchants_shipping_rule_is_audited(client, keys):
    """A shipping rule picks the carrier and the promised window of every order the merchant ships, and
    setting one (API or console) left no audit entry. It is `shipping_rule.set`, with the rule it replaced."""
    merchant, admin = auth(keys["merchant"]), auth(keys["admin"])
    for body, expected in (({"max_days": 5}, 200), ({"partner_id": "nowhere"}, 404), ({"max_days": 3}, 200)):
        put = client.put("/v1/merchants/m1/shipping-rule", json=body, headers=merchant)
        assert put.status_code == expected, put.text
    entries = _audited(client, admin, "shipping_rule.set")  # the refused one left none
    assert [(target, role, detail) for target, role, _, detail in entries] == [
        ("m1", "merchant", {"partner_id": None, "max_days": 5, "old": None}),
        ("m1", "merchant", {"partner_id": None, "max_days": 3, "old": {"partner_id": None, "max_days": 5}}),
    ]


def test_keyword_campaigns_and_keywords_are_audited(client, keys):
    """Keyword campaigns spend a merchant's money per click, yet creating or changing one, and adding a
    keyword or changing its bid, left no audit entry: a leaked merchant key could raise every bid to 10,000
    unseen. Each is audited now, with what it set."""
    merchant, admin = auth(keys["merchant"]), auth(keys["admin"])
    body = {
        "name": "Spring",
        "daily_budget": "50.00",
        "product_ids": ["p01"],
        "keywords": [{"keyword": "cream", "match_type": "broad", "bid": "0.80"}],
    }
    made = client.post("/v1/merchants/m1/keyword-campaigns", json=body, headers=merchant)
    assert made.status_code == 201, made.text
    campaign = made.json()["campaign_id"]
    base = f"/v1/keyword-campaigns/{campaign}"
    assert client.patch(base, json={"daily_budget": "60.00"}, headers=merchant).status_code == 200
    added = client.post(
        f"{base}/keywords", json={"keyword": "serum", "match_type": "exact", "bid": "1.20"}, headers=merchant
    )
    assert added.status_code == 201, added.text
    keyword = added.json()["keyword_id"]
    changed = client.patch(f"{base}/keywords/{keyword}", json={"bid": "9999.00"}, headers=merchant)
    assert changed.status_code == 200, changed.text
    found = {
        action: _audited(client, admin, action)
        for action in (
            "keyword_campaign.created",
            "keyword_campaign.changed",
            "keyword.added",
            "keyword.changed",
        )
    }
    assert all(len(entries) == 1 for entries in found.values()), found
    assert {entries[0][1] for entries in found.values()} == {"merchant"}
    created = found["keyword_campaign.created"][0]
    assert created[0] == campaign and created[3]["daily_budget"] == "50.00"
    assert [k["keyword"] for k in created[3]["keywords"]] == ["cream"]
    assert found["keyword_campaign.changed"][0][3] == {"daily_budget": "60.00"}
    assert found["keyword.added"][0][0] == str(keyword)
    assert found["keyword.added"][0][3]["bid"] == "1.20"
    assert found["keyword.changed"][0][3] == {"campaign_id": campaign, "bid": "9999.00"}


def test_a_campaigns_whole_lifecycle_is_audited(client, keys, session_factory):
    """Only a campaign's launch was audited. Planning with `candidates` lets a marketer key choose who gets
    the coupons (its own shopper account, say) and left no entry; nor did creating, scheduling or
    completing the campaign. Each move is audited now, the plan in the transaction that stores it."""
    marketer, admin = auth(keys["marketer"]), auth(keys["admin"])
    campaign = grant_only_campaign(client, marketer, session_factory, "Friends", "c-friends")
    candidates = [
        {"shopper_id": f"s{i}", "coupon_id": "c-friends", "p_control": 0.1, "p_treated": 0.1 + i / 200,
         "spend_control": 150.0, "spend_treated": 160.0}
        for i in range(1, 41)
    ]  # fmt: skip
    plan = client.post(f"/v1/campaigns/{campaign}/plan", json={"candidates": candidates}, headers=marketer)
    assert plan.status_code == 200, plan.text
    for action in ("schedule", "launch", "complete"):
        moved = client.post(f"/v1/campaigns/{campaign}/{action}", headers=marketer)
        assert moved.status_code == 200, moved.text
    actions = ("created", "planned", "scheduled", "launched", "completed")
    found = {action: _audited(client, admin, f"campaign.{action}") for action in actions}
    assert all(len(entries) == 1 for entries in found.values()), found
    assert {entries[0][:2] for entries in found.values()} == {(campaign, "marketer")}
    assert found["created"][0][3]["budget"] == "500.00"
    planned = found["planned"][0][3]
    assert (planned["source"], planned["audience_size"]) == ("candidates", plan.json()["audience_size"])


def test_an_admins_moves_of_an_order_are_audited(client, keys):
    """Refunds were audited but nothing else an admin key does to an order: marking one paid (the goods
    then ship with no payment behind them), shipping it, adding carrier scans or moving its status. Each
    is audited now, with what it set."""
    shopper, admin = auth(keys["shopper"]), auth(keys["admin"])
    order = client.post(
        "/v1/shoppers/s1/orders", json={"lines": [{"product_id": "p05", "quantity": 1}]}, headers=shopper
    )
    assert order.status_code == 201, order.text
    oid = order.json()["order_id"]
    steps = [
        ("payment", {"payment_ref": "PAY-FAKE"}),
        ("status", {"status": "customs_cleared"}),
        ("shipment", {"tracking_no": "SF-9", "location": "Ningbo"}),
        ("tracking", {"status": "in_transit", "location": "Hangzhou"}),
    ]
    for step, body in steps:
        done = client.post(f"/v1/orders/{oid}/{step}", json=body, headers=admin)
        assert done.status_code == 200, done.text
    actions = ("payment_confirmed", "status_changed", "shipped", "tracking_added")
    found = {action: _audited(client, admin, f"order.{action}") for action in actions}
    assert {action: [(e[0], e[1], e[3]) for e in entries] for action, entries in found.items()} == {
        "payment_confirmed": [(str(oid), "admin", {"payment_ref": "PAY-FAKE"})],
        "status_changed": [(str(oid), "admin", {"status": "customs_cleared"})],
        "shipped": [(str(oid), "admin", {"tracking_no": "SF-9", "location": "Ningbo"})],
        "tracking_added": [(str(oid), "admin", {"status": "in_transit", "location": "Hangzhou"})],
    }


def test_concurrent_creates_in_one_layer_take_disjoint_slices(api, shop):  # noqa: F811
    """A layer's experiments exclude each other: each takes the lowest free slice of the layer's hash
    space. Two creates at once that each read the slices taken before the other committed would take the
    same one, putting a unit in both experiments. On PostgreSQL only the name check's look-alike lock
    happened to serialize the creates (without it, 2 runs of 2 overlapped); the layer's row is now locked
    while its slice is chosen, which holds without that lock too (checked by removing it)."""
    with transaction(shop) as s:
        admin = auth(create_api_key(s, "admin")[1])
        store.create_experiment(s, "first", [("a", 1, None), ("b", 1, None)], layer="home", traffic=0.2)
    barrier = threading.Barrier(RACERS)

    def create(i: int):
        body = {"name": f"slice-{i}", "variants": PLAIN, "layer": "home", "traffic": 0.2}
        barrier.wait()
        return api.post("/v1/experiments", json=body, headers=admin)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        responses = list(pool.map(create, range(RACERS)))
    assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses]
    slices = sorted((r.json()["traffic_start"], r.json()["traffic_end"]) for r in responses)
    slices.insert(0, (0.0, 0.2))
    assert all(hi <= lo + 1e-9 for (_, hi), (lo, _) in zip(slices, slices[1:], strict=False)), slices
    assert slices[-1][1] <= 1.0 + 1e-9
