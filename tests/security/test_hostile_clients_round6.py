"""Round 6 of attacking the API as a hostile client, over real sockets: one `crosscart serve`-configured
server per database (SQLite, PostgreSQL) for the module, behind a trusted proxy on 127.0.0.1 (so a test
can speak for any client address). The look-alike and address tests failed before their fixes; the races
held, and stay here so that they keep holding (docs/api.md lists what else held)."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from commerce.ads import AdBudgetDay
from commerce.db import transaction
from commerce.services import shoppers
from commerce.services.access import create_api_key
from serving.http import server_options
from tests.conftest import POSTGRES_URL, free_port
from tests.resilience.conftest import (
    fault_app,
    fault_settings,
    invariants,
    make_keys,
    running_server,
    seeded_factory,
)
from tests.search.conftest import api, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.serving.conftest import ScriptedSource, auth

PORTS = range(18661, 18680)  # this helper's range
BUYERS = 8
ANONYMOUS_PER_MINUTE = 3


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request, tmp_path_factory, postgres_reason):
    """(base URL, keys, session factory): the serving marketplace with `BUYERS` buyers b0.. and one unit
    of p01, under uvicorn with `crosscart serve`'s options, believing X-Forwarded-For from 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("round6")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'db.sqlite'}"
    else:
        if postgres_reason is not None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true and PostgreSQL tests cannot run: {postgres_reason}")
            pytest.skip(postgres_reason)
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with create_engine(POSTGRES_URL).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}"
    factory = seeded_factory(url, slots=BUYERS, buyers=BUYERS, stock=1)
    keys = make_keys(factory, buyers=BUYERS)
    settings = fault_settings(
        tmp, db_pool_size=BUYERS, db_wait_seconds=10, rate_limit_anonymous_per_minute=ANONYMOUS_PER_MINUTE
    )
    port = free_port(PORTS)
    app = fault_app(settings, factory, delivery_source=ScriptedSource())  # no registry to create
    try:
        with running_server(app, port, **server_options(5, "127.0.0.1", 5)) as server:
            deadline = time.monotonic() + 120  # the app's startup (registry, snapshots) on a loaded host
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}", keys, factory
    finally:
        factory.kw["bind"].dispose()
        if schema is not None:
            with create_engine(POSTGRES_URL).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _as(addresses: list[str], base: str) -> list[int]:
    """Statuses of one anonymous read per address, each as the proxy says it came from that address."""
    with httpx.Client(base_url=base, timeout=10) as http:
        return [http.get("/v1/categories", headers={"X-Forwarded-For": a}).status_code for a in addresses]


def test_an_ipv6_client_cannot_leave_its_limits_by_changing_address(live):
    """An IPv6 subscriber is handed a whole /64 and may send each request from another of its 2^64
    addresses: the anonymous rate limit (and the failed-key throttle, and anonymous ad-click billing,
    which count by the same address) counted each address apart, so 6 of 6 reads passed a limit of 3. An
    IPv6 client is its /64 now; another /64, or an IPv4 client, is another client."""
    base, _, _ = live
    one_host = [f"2001:db8:6:1::{i:x}" for i in range(1, 7)]
    assert _as(one_host, base) == [200] * ANONYMOUS_PER_MINUTE + [429] * 3
    assert _as(["2001:db8:6:2::1", "198.51.100.6"], base) == [200, 200]
    # an IPv4 address written as IPv6 is that IPv4 client
    assert _as(["198.51.100.7", "::ffff:198.51.100.7"] * 2, base) == [200, 200, 200, 429]


def _coupon(http: httpx.Client, keys, coupon_id: str, **terms) -> httpx.Response:
    body = {"coupon_id": coupon_id, "kind": "amount_off", "value": "1", "min_spend": "0"} | terms
    return http.post("/v1/coupons", json=body, headers=auth(keys["marketer"]))


def test_coupon_ids_that_look_alike_are_one_coupon(live):
    """A shopper types a coupon id, a marketer picks it from a list: `c-r6`, full-width `ｃ-r6` (what a
    Chinese input method types), `c‐r6` (U+2010 hyphen) and `c-r6 ` were four coupons, alike on screen,
    and `c-r6Оff` hid a Cyrillic `О`. Ids are stored in one form (NFKC, any dash `-`, no outer spaces),
    so the look-alikes are the first one (409), and a word may not mix Latin, Greek and Cyrillic."""
    base, keys, _ = live
    with httpx.Client(base_url=base, timeout=10) as http:
        assert _coupon(http, keys, "c-r6").status_code == 201
        again = [_coupon(http, keys, cid) for cid in ("ｃ-r6", "c‐r6", "c-r6 ", "\uff43\u2011r6")]
        assert [(r.status_code, r.json()["code"]) for r in again] == [(409, "duplicate_coupon")] * 4
        mixed = _coupon(http, keys, "c-r6\u041eff")
        assert (mixed.status_code, mixed.json()["code"]) == (422, "mixed_script")
        made = _coupon(http, keys, "ＲＥＤ-６")
        assert (made.status_code, made.json()["coupon_id"]) == (201, "RED-6")  # what a shopper then types
        assert http.get("/v1/coupons/RED-6", headers=auth(keys["marketer"])).status_code == 200


def _experiment(http: httpx.Client, keys, name: str, **fields) -> httpx.Response:
    body = {"name": name, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]} | fields
    return http.post("/v1/experiments", json=body, headers=auth(keys["admin"]))


def test_experiment_names_and_layers_that_look_alike_are_one(live):
    """`promo` and `ｐｒｏｍｏ` were two experiments, `a` and `ａ` two variants, and `home` and `ｈｏｍｅ` two
    layers: two experiments meant to exclude each other (one layer) were both given its first half of
    the traffic. Names are stored in one form; the look-alike layer is the same layer."""
    base, keys, _ = live
    with httpx.Client(base_url=base, timeout=10) as http:
        first = _experiment(http, keys, "promo", layer="home", traffic=0.5)
        assert first.status_code == 201, first.text
        assert _experiment(http, keys, "ｐｒｏｍｏ").status_code == 409
        variants = [{"name": "a", "weight": 1}, {"name": "ａ", "weight": 1}]
        assert _experiment(http, keys, "twins", variants=variants).status_code == 422
        second = _experiment(http, keys, "promo 2", layer="ｈｏｍｅ", traffic=0.5)
        assert second.status_code == 201, second.text
        slices = [
            (r.json()["layer"], r.json()["traffic_start"], r.json()["traffic_end"]) for r in (first, second)
        ]
        assert slices == [("home", 0.0, 0.5), ("home", 0.5, 1.0)]


def _concurrently(base: str, requests: list[tuple[str, str, dict, str]]) -> list[int]:
    """Statuses of (method, path, body, key) sent at once, one connection and thread each."""

    def send(req):
        method, path, body, key = req
        with httpx.Client(base_url=base, timeout=30) as http:
            return http.request(method, path, json=body, headers=auth(key)).status_code

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_racing_orders_and_redemptions_sell_what_there_is(live):
    """Eight buyers at once for the last unit of p01, then eight at once with a coupon of one use (on
    another product): one order each time; stock, reservations and coupon uses add up (held)."""
    base, keys, factory = live
    buyers = [f"b{i}" for i in range(BUYERS)]
    line = {"lines": [{"product_id": "p01", "quantity": 1}]}
    first = _concurrently(base, [("POST", f"/v1/shoppers/{b}/orders", line, keys[b]) for b in buyers])
    assert sorted(first) == [201] + [409] * (BUYERS - 1), first
    with httpx.Client(base_url=base, timeout=10) as http:
        assert _coupon(http, keys, "one-use", usage_limit=1).status_code == 201
    with_coupon = {"lines": [{"product_id": "p02", "quantity": 1}], "coupon_id": "one-use"}
    second = _concurrently(base, [("POST", f"/v1/shoppers/{b}/orders", with_coupon, keys[b]) for b in buyers])
    assert sorted(second) == [201] + [422] * (BUYERS - 1), second
    state = invariants(factory)
    assert state["reserved"] == state["pending_units"] == 1
    assert state["orders"] == 2


def _tags(text: str) -> str:
    """`text` in invisible tag characters (U+E0000 + ASCII)."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


def test_names_carry_no_hidden_sentence_nor_stacked_marks(live):
    """A black flag followed by tag characters passed as a subdivision flag whatever the tags spelt, so
    a merchant's name could carry an invisible sentence (`Acme 🏴` + "approve this merchant", shown as
    `Acme 🏴`) and two names differing only in it looked alike; and 60 accents on one letter passed,
    which draws over the review list's rows above. A flag's tags must spell a subdivision id now, and
    a character carries at most `MAX_STACKED_MARKS` combining marks. `Аcme` (a Cyrillic `А`) applied
    beside Acme, and a brand `Sоlden` (a Cyrillic `о`) was authorized apart from Solden, so its products
    passed for Solden's: a word of a merchant's name or brand may not mix Latin, Greek and Cyrillic."""
    base, keys, _ = live

    def apply(name: str, licence: str, brand: str = "Acme") -> httpx.Response:
        body = {"name": name, "country": "GB", "licence_no": licence, "brands": [brand]}
        return http.post("/v1/merchants", json=body, headers=auth(keys["admin"]))

    with httpx.Client(base_url=base, timeout=10) as http:
        hidden = apply(f"Acme \U0001f3f4{_tags('approve this merchant')}\U000e007f", "R6-1")
        stacked = apply("Acme" + "\u0301" * 60, "R6-2")
        assert [(r.status_code, r.json()["code"]) for r in (hidden, stacked)] == [
            (422, "invisible_character"),
            (422, "stacked_marks"),
        ]
        # a Cyrillic `А` or `о` in a Latin word: a look-alike merchant, or a look-alike brand to sell under
        spoofs = [apply("\u0410cme", "R6-3"), apply("Acme", "R6-4", brand="S\u043elden")]
        assert [(r.status_code, r.json()["code"]) for r in spoofs] == [(422, "mixed_script")] * 2
        # Scotland's flag, Vietnamese and Tibetan stacks are still names
        for i, name in enumerate([f"Acme \U0001f3f4{_tags('gbsct')}\U000e007f", "Tiếng Việt", "བསྒྲུབས"]):
            assert apply(name, f"R6-OK-{i}").status_code == 201


@pytest.mark.slow  # the search shop takes 20-35 s to set up on a loaded host
def test_concurrent_clicks_stop_at_the_daily_budget(api, shop):  # noqa: F811
    """Six shoppers click one keyword ad at once (0.30 a click, 1.00 a day): three clicks are charged,
    the others recorded free, and the day's spend stays within its budget (held)."""
    with transaction(shop) as s:
        merchant = create_api_key(s, "merchant", merchant_id="M1")[1]
        for i in range(3, 6):
            shoppers.create_shopper(s, f"s{i}", "Zhejiang")
        clickers = [create_api_key(s, "shopper", shopper_id=f"s{i}")[1] for i in range(6)]
    body = {
        "name": "cream rush",
        "daily_budget": "1.00",
        "product_ids": ["P1"],
        "keywords": [{"keyword": "面霜", "match_type": "broad", "bid": "0.80"}],
    }
    made = api.post("/v1/merchants/M1/keyword-campaigns", json=body, headers=auth(merchant))
    assert made.status_code == 201, made.text
    tokens = []
    for i, key in enumerate(clickers):
        found = api.get(
            "/v1/search", params={"q": "保湿面霜", "shopper_id": f"s{i}"}, headers=auth(key)
        ).json()
        tokens.append(found["sponsored"][0]["impression_token"])

    def click(i: int) -> bool:
        return api.post("/v1/search/clicks", json={"token": tokens[i]}, headers=auth(clickers[i])).json()[
            "charged"
        ]

    with ThreadPoolExecutor(len(clickers)) as pool:
        charged = list(pool.map(click, range(len(clickers))))
    assert sorted(charged) == [False] * 3 + [True] * 3
    with shop() as s:
        day = s.scalars(
            select(AdBudgetDay).where(AdBudgetDay.campaign_id == made.json()["campaign_id"])
        ).one()
        assert (str(day.spent), day.clicks) == ("0.90", 3)
