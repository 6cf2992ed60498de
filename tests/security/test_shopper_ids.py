"""Shopper ids in storefront requests are read as every other id is (docs/api.md, look-alikes): the id as
sent if a database row has it (or, on the pages answered from snapshots, the served recommender learned
it so), else its normal form. `/v1/shoppers/ｓ1/recommendations` was a cold-start page for a shopper
named `ｓ1`, and s1's own key was refused it; a look-alike must still reach no other shopper's data."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import sessionmaker

from commerce.db import transaction
from commerce.events import BehaviorEvent
from commerce.experiments import ExperimentExposure
from commerce.services import shoppers
from commerce.services.access import create_api_key
from serving.app import create_app
from tests.serving.conftest import ScriptedSource, auth, seed_marketplace
from tests.serving.test_console import sign_in

# s1 as a Chinese input method (full width), a form or a copied link (spaces) may spell it.
LOOK_ALIKES = ["\uff531", "\uff53\uff11", "s1 ", " s1", "s1\u00a0", "s1\u3000"]
CART = {"lines": [{"product_id": "p05", "quantity": 1}]}


def _path(shopper_id: str, route: str) -> str:
    return f"/v1/shoppers/{quote(shopper_id, safe='')}/{route}"


def _personalised(page: dict) -> bool:
    """Whether the page's first item is the recommender's (`tiny:...`), not a cold start's."""
    return page["items"][0]["reason"].startswith("tiny")


def _search(client, key: str, shopper_id: str):
    return client.get("/v1/search", params={"q": "product", "shopper_id": shopper_id}, headers=auth(key))


def _event(client, key: str, shopper_id: str, event_id: str):
    event = {"event_id": event_id, "ts": datetime.now(UTC).isoformat(), "event_type": "view"}
    event |= {"shopper_id": shopper_id, "product_id": "p05"}
    return client.post("/v1/events", json={"events": [event]}, headers=auth(key))


def test_a_look_alike_shopper_id_gets_the_shoppers_own_answer(client, keys, session_factory):
    """Each look-alike of s1, on each storefront read of a shopper id, by the storefront's key and by s1's
    own: s1's page (personalised, `shopper_id` s1). Before, all 36 were a cold-start page for another id
    or a 403 for s1's own key."""
    storefront, own = keys["storefront"], keys["shopper"]
    expected = {
        route: client.get(_path("s1", route), headers=auth(storefront)).json()
        for route in ("recommendations", "buy-again")
    }
    assert _personalised(expected["recommendations"])
    assert [i["product_id"] for i in expected["buy-again"]["items"]] == ["p01"]
    searched = _search(client, storefront, "s1").json()["items"]
    wrong = []
    for n, look_alike in enumerate(LOOK_ALIKES):
        for route, page in expected.items():
            for key in (storefront, own):
                got = client.get(_path(look_alike, route), headers=auth(key))
                if got.status_code != 200 or got.json() != page:
                    wrong.append((route, look_alike, key == own, got.status_code))
        found = _search(client, own, look_alike)
        if found.status_code != 200 or found.json()["items"] != searched:
            wrong.append(("search", look_alike, True, found.status_code))
        posted = _event(client, own, look_alike, f"look-alike-{n}")
        if posted.status_code != 202:
            wrong.append(("events", look_alike, True, posted.status_code))
    assert wrong == [], f"{len(wrong)} of {len(LOOK_ALIKES) * 6} look-alike requests answered wrong"
    with session_factory() as s:
        logged = s.scalars(
            select(BehaviorEvent.shopper_id).where(BehaviorEvent.event_id.contains(":look-alike-"))
        ).all()
    assert logged == ["s1"] * len(LOOK_ALIKES)


def test_a_look_alike_reaches_no_other_shoppers_data(client, keys):
    """s2's key names s1 in every look-alike form on every /v1/shoppers/{id}/... route, by a query and in
    an event: 403 each time, as for `s1` itself. s1's own key gets its orders and coupons through the same
    spellings, and a quote."""
    other, own = auth(keys["shopper2"]), auth(keys["shopper"])
    for look_alike in ["s1", *LOOK_ALIKES]:
        reads = [
            client.get(_path(look_alike, route), headers=other)
            for route in ("recommendations", "buy-again", "orders", "coupons")
        ]
        reads.append(client.post(_path(look_alike, "orders"), json=CART, headers=other))
        reads.append(client.post(_path(look_alike, "cart/quote"), json=CART, headers=other))
        reads.append(_search(client, keys["shopper2"], look_alike))
        reads.append(_event(client, keys["shopper2"], look_alike, "stolen"))
        assert [r.status_code for r in reads] == [403] * 8, look_alike
        assert client.get(_path(look_alike, "recommendations"), headers=own).status_code == 200
        assert client.get(_path(look_alike, "orders"), headers=own).json()["total"] == 1
        assert client.get(_path(look_alike, "coupons"), headers=own).json()["shopper_id"] == "s1"
        quote_ = client.post(_path(look_alike, "cart/quote"), json=CART, headers=own)
        assert (quote_.status_code, quote_.json()["shopper_id"]) == (200, "s1")


@contextmanager
def serving(factory, settings, source):
    """tests/serving's marketplace and app on this test's database, with a storefront key and s1's."""
    seed_marketplace(factory)
    with transaction(factory) as s:
        keys = {role: create_api_key(s, role)[1] for role in ("storefront", "admin")}
        keys["shopper"] = create_api_key(s, "shopper", shopper_id="s1")[1]
    app = create_app(
        settings,
        session_factory=factory,
        model_source=source,
        uplift_source=ScriptedSource(),
        delivery_source=ScriptedSource(),
        start_background=False,
    )
    with TestClient(app) as client:
        yield client, keys


@pytest.fixture
def served(factory, settings, source):  # factory: SQLite and PostgreSQL (tests/commerce)
    with serving(factory, settings, source) as served:
        yield served


def test_a_stored_spelling_wins_over_its_normal_form(served, factory, source, monkeypatch):
    """A shopper stored as `ｓ1` before ids were normalised is its own shopper: its key reaches its pages
    and orders by that spelling, s1's key does not (nor `ｓ1`'s key s1's); an id the recommender learned
    as spelt (`s3 `) is that shopper's. Any other look-alike is the shopper of its normal form."""
    client, keys = served
    legacy = "\uff531"
    source.versions["1"].known.add("s3 ")
    with monkeypatch.context() as m, transaction(factory) as s:
        m.setattr(shoppers, "chosen_id", lambda session, value, *_: value)
        shoppers.create_shopper(s, legacy, "Zhejiang")
        legacy_key = create_api_key(s, "shopper", shopper_id=legacy)[1]
    storefront = auth(keys["storefront"])
    page = client.get(_path(legacy, "recommendations"), headers=storefront).json()
    assert (page["shopper_id"], _personalised(page)) == (legacy, False)  # the recommender never saw it
    for route in ("recommendations", "buy-again", "coupons"):
        mine = client.get(_path(legacy, route), headers=auth(legacy_key))
        assert (mine.status_code, mine.json()["shopper_id"]) == (200, legacy)
        assert client.get(_path(legacy, route), headers=auth(keys["shopper"])).status_code == 403
        assert client.get(_path("s1", route), headers=auth(legacy_key)).status_code == 403
    assert client.get(_path(legacy, "orders"), headers=auth(legacy_key)).json()["total"] == 0
    assert _event(client, legacy_key, legacy, "legacy-1").status_code == 202
    assert _event(client, keys["shopper"], legacy, "legacy-2").status_code == 403
    for look_alike in ("\uff532", "s2 "):  # no shopper is stored so: s2's page
        page = client.get(_path(look_alike, "recommendations"), headers=storefront).json()
        assert (page["shopper_id"], _personalised(page)) == ("s2", True)
    learned = client.get(_path("s3 ", "recommendations"), headers=storefront).json()
    assert (learned["shopper_id"], _personalised(learned)) == ("s3 ", True)
    plain = client.get(_path("s3", "recommendations"), headers=storefront).json()
    assert (plain["shopper_id"], _personalised(plain)) == ("s3", False)
    with factory() as s:
        logged = s.scalars(
            select(BehaviorEvent.shopper_id).where(BehaviorEvent.event_id.contains(":legacy-"))
        )
    assert logged.all() == [legacy]


M1_LOOK_ALIKES = ["\uff4d1", "\uff4d\uff11", "m1 ", " m1", "m1\u00a0", "m1\u3000"]
NEW_KEY = re.compile(r'id="new-key">(cc_[^<]+)<')


def test_a_key_is_created_for_the_stored_id_of_a_look_alike(served):
    """POST /v1/api-keys and the console's keys page with a look-alike of s1 or m1 bind the key to s1 or m1,
    as every other id is read, and the key then works on that shopper's or merchant's routes (and not on
    another's). Before, all 13 were a 422 "no shopper" / "no merchant" though s1 and m1 exist."""
    client, keys = served
    admin = auth(keys["admin"])
    cases = [("shopper", a, "s1", _path("s1", "orders"), _path("s2", "orders")) for a in LOOK_ALIKES]
    cases += [
        ("merchant", a, "m1", "/v1/merchants/m1/shipping-rule", "/v1/merchants/m2/shipping-rule")
        for a in M1_LOOK_ALIKES
    ]
    refused = []
    for role, look_alike, stored, own, other in cases:
        body = {"role": role, f"{role}_id": look_alike}
        made = client.post("/v1/api-keys", json=body, headers=admin)
        if made.status_code != 201:
            refused.append((look_alike, made.status_code))
            continue
        key = auth(made.json()["key"])
        assert made.json()[f"{role}_id"] == stored
        answers = [client.get(path, headers=key).status_code for path in (own, other)]
        assert answers == [200, 403], (look_alike, answers)
    token = sign_in(client, keys["admin"])
    form = {"role": "shopper", "shopper_id": "\uff531", "csrf_token": token}
    page = client.post("/console/keys", data=form)
    if page.status_code != 201:
        refused.append(("console", page.status_code))
    else:
        key = auth(NEW_KEY.search(page.text).group(1))
        assert client.get(_path("s1", "orders"), headers=key).json()["total"] == 1
    assert refused == [], f"{len(refused)} of {len(cases) + 1} look-alike key creations refused"


def test_a_key_for_a_stored_spelling_is_bound_to_it(served, factory, monkeypatch):
    """With `ｓ1` stored beside s1 (before ids were normalised), a key asked for `ｓ1` is `ｓ1`'s, for `ｓ１`
    (no row so) s1's: never another shopper than the one stored. An id no shopper has in any form is
    still refused."""
    client, keys = served
    legacy = "\uff531"
    with monkeypatch.context() as m, transaction(factory) as s:
        m.setattr(shoppers, "chosen_id", lambda session, value, *_: value)
        shoppers.create_shopper(s, legacy, "Zhejiang")
    admin = auth(keys["admin"])
    bound = {}
    for asked in (legacy, "\uff53\uff11", "s1"):
        made = client.post("/v1/api-keys", json={"role": "shopper", "shopper_id": asked}, headers=admin)
        assert made.status_code == 201, made.text
        bound[asked] = made.json()["shopper_id"]
        key = auth(made.json()["key"])
        assert client.get(_path(bound[asked], "orders"), headers=key).status_code == 200
        other = "s1" if bound[asked] == legacy else legacy
        assert client.get(_path(other, "orders"), headers=key).status_code == 403
    assert bound == {legacy: legacy, "\uff53\uff11": "s1", "s1": "s1"}
    for nobody in ("\uff539", "s9 "):
        made = client.post("/v1/api-keys", json={"role": "shopper", "shopper_id": nobody}, headers=admin)
        assert (made.status_code, made.json()["detail"]) == (422, f"no shopper {nobody!r}")


@contextmanager
def shopper_reads(factory):
    """The statements that read the shoppers table while the block runs, as a list it fills."""
    seen = []

    def count(conn, cursor, statement, *args):
        if re.search(r"\bFROM shoppers\b", statement):
            seen.append(statement)

    engine = factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_route_with_a_session_reads_a_shopper_id_by_the_database(served, factory, source):
    """The recommender learned `s3 ` but no row has it: on the routes that read the database (orders,
    coupons, the quote, events) `s3 ` is s3, as it was before look-alikes were read by the model too. s3's
    key got 403 for `s3 ` on each (the model's spelling), while the event was stored under s3 (the
    database's): checked as one shopper, stored as another."""
    client, keys = served
    source.versions["1"].known.add("s3 ")
    with transaction(factory) as s:
        own_key = create_api_key(s, "shopper", shopper_id="s3")[1]
    own = auth(own_key)
    for route in ("orders", "coupons"):
        got = client.get(_path("s3 ", route), headers=own)
        assert got.status_code == 200, (route, got.text)
    assert client.get(_path("s3 ", "coupons"), headers=own).json()["shopper_id"] == "s3"
    quoted = client.post(_path("s3 ", "cart/quote"), json=CART, headers=own)
    assert quoted.json()["code"] == "identity_required"  # s3's own answer (no verified name), not a 403
    assert _event(client, keys["shopper"], "s3 ", "s3-stolen").status_code == 403
    assert _event(client, keys["storefront"], "s3 ", "s3-storefront").status_code == 202
    assert _event(client, own_key, "s3 ", "s3-own").status_code == 202
    with factory() as s:
        logged = s.scalars(select(BehaviorEvent.shopper_id).where(BehaviorEvent.event_id.contains(":s3-")))
    assert logged.all() == ["s3", "s3"]


def _batch(shopper_id: str, first: int, count: int) -> dict:
    now = datetime.now(UTC).isoformat()
    events = [
        {"event_id": f"b-{first + n}", "ts": now, "event_type": "view", "product_id": "p05"}
        for n in range(count)
    ]
    return {"events": [e | {"shopper_id": shopper_id} for e in events]}


def test_an_event_batch_reads_each_shopper_id_once_and_none_when_refused(factory, settings, source):
    """A batch of 990 events naming `ｓ1` read the shoppers table 990 times (once per event), and a
    throttled key with 10 events of its quota left had each of a 50-event batch's ids looked up before
    the 429. Now once per distinct id, and not at all for a refused batch."""
    throttled = settings.model_copy(update={"event_rate_limit_per_minute": 1_000})
    with serving(factory, throttled, source) as (client, keys):
        with shopper_reads(factory) as reads:
            first = client.post("/v1/events", json=_batch("\uff531", 0, 990), headers=auth(keys["shopper"]))
        assert (first.status_code, len(reads)) == (202, 1)
        with shopper_reads(factory) as reads:
            refused = client.post(
                "/v1/events", json=_batch("\uff531", 990, 50), headers=auth(keys["shopper"])
            )
        assert (refused.status_code, len(reads)) == (429, 0)
    with factory() as s:
        logged = set(
            s.scalars(select(BehaviorEvent.shopper_id).where(BehaviorEvent.event_id.contains(":b-")))
        )
    assert logged == {"s1"}


def test_an_exposure_is_logged_for_the_shopper_a_look_alike_names(served, factory):
    """The page for `ｓ1` shows s1's variant; its exposure, reported with `ｓ1` as the unit, was a 403 for
    s1's key and, from the storefront, the exposure of another unit (`ｓ1`'s hash, not s1's variant)."""
    client, keys = served
    admin, storefront = auth(keys["admin"]), auth(keys["storefront"])
    body = {"name": "look", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    assert client.post("/v1/experiments", json=body, headers=admin).status_code == 201
    assert client.post("/v1/experiments/look/start", headers=admin).status_code == 200
    client.app.state.serving.experiments.refresh()
    shown = client.get(_path("\uff531", "recommendations"), headers=storefront).json()["experiments"]["look"]
    exposure = {"unit_id": "\uff531", "variant": shown}
    for key in (storefront, auth(keys["shopper"])):
        logged = client.post("/v1/experiments/look/exposures", json=exposure, headers=key)
        assert logged.status_code == 200, logged.text
    client.app.state.serving.exposures.flush()
    with factory() as s:
        units = set(s.scalars(select(ExperimentExposure.unit_id)))
    assert units == {"s1"}


def test_a_look_alike_page_is_answered_while_the_database_is_down(served, factory, monkeypatch):
    """Before look-alikes were read, `ｓ1`'s pages came from snapshots alone; reading it by the database
    made them 503 while the database could not answer. Now the id is then read in its normal form: s1's
    page for the storefront and s1's key, and a shopper key is still checked against that form."""
    client, keys = served
    with transaction(factory) as s:
        other = auth(create_api_key(s, "shopper", shopper_id="s2")[1])
    storefront, own = auth(keys["storefront"]), auth(keys["shopper"])
    pages = {
        r: client.get(_path("s1", r), headers=storefront).json() for r in ("recommendations", "buy-again")
    }
    searched = _search(client, keys["shopper"], "s1").json()["items"]
    for key in (own, other):  # the keys seen valid, as a storefront's are while the database is down
        assert client.get(_path("s1", "orders"), headers=key).status_code in (200, 403)
    down = sessionmaker(bind=create_engine("sqlite:////nonexistent-directory/down.db"))
    monkeypatch.setattr(client.app.state.serving, "session_factory", down)
    for route, page in pages.items():
        for key in (storefront, own):
            got = client.get(_path("\uff531", route), headers=key)
            assert (got.status_code, got.json()) == (200, page), (route, got.text)
    found = _search(client, keys["shopper"], "s1 ")
    assert (found.status_code, found.json()["items"]) == (200, searched)
    assert client.get(_path("\uff531", "recommendations"), headers=other).status_code == 403


def test_search_reads_a_look_alike_shopper_in_a_database_slot(served, factory):
    """`?shopper_id=ｓ1` was looked up in a session of its own, beside the slots that bound how many
    requests use the database at once: with every slot taken it still read the database. Now it waits
    for a slot like the storefront pages, and past the deadline reads the id in its normal form."""
    client, keys = served
    expected = _search(client, keys["shopper"], "s1").json()["items"]
    gate = client.app.state.serving.db_gate
    gate.wait_seconds = 0.2
    for _ in range(gate.requests):
        client.portal.call(gate._request_slots.acquire)
    try:
        with shopper_reads(factory) as reads:
            found = _search(client, keys["shopper"], "\uff531")
    finally:
        for _ in range(gate.requests):
            gate._request_slots.release()
    assert (found.status_code, found.json()["items"], reads) == (200, expected, [])
