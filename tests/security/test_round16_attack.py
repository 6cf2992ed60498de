"""Round 16: a hostile client against the key cache, search and its ads, the metrics and the API's
documentation, on the tiny marketplace of tests/serving (the ads on the bilingual shop of tests/search,
SQLite and PostgreSQL). Each test failed before its fix.

Tried and held, sent (not replayed here): FTS5 and tsquery syntax in `q` (`"`, `*`, `NEAR(a b)`,
`title:`, `&`, `|`, `!`, `:*`, quotes, backslashes, `'; --`), 100 letters, 100 Arabic ligatures that NFKC
expands eighteenfold, 50 Chinese words: 200 on the memory and PostgreSQL indexes, none slow (queries
reach an index as words only, each quoted); every anonymous GET route over its rate limit answers 429,
but `/metrics` (fixed here) and `/`, `/docs`, `/redoc`, `/openapi.json` (static or cached pages).
Read in the code, held: the console's CSRF check (a dependency of every console router, sign-in and
sign-out included) and its `next` (console paths only); the past-the-end and sign-in redirects
(relative, from the path alone, never the Host); a client's `X-Request-ID` (taken only as a plain
token); a plot path leaving `plots/`; two refund requests for one order (a unique order id); CSV
exports (formula cells quoted); the fast path's parsed queries (4,096 kept at most)."""

from __future__ import annotations

import itertools
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy import event

import serving.middleware
import serving.search
from commerce.db import transaction
from commerce.errors import Conflict
from commerce.search import query
from commerce.services import ads
from tests.search.conftest import api, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.security.test_hostile_clients_round4 import _keys
from tests.serving.conftest import LOOPBACK, auth


def _new_key(client, admin: dict[str, str]) -> tuple[int, str]:
    created = client.post("/v1/api-keys", json={"role": "marketer"}, headers=admin)
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


def test_a_key_checked_while_it_is_revoked_is_not_kept_valid(client, keys):
    """A key's check read the database, then cached what it read for 30 s: a check that read the key
    before the revocation and finished after it (the revoking replica's discard, or the feed's, done in
    between) put the key back as valid, and it went on working for the cache's 30 s. The key's holder only
    needs a request in flight when the admin revokes it. A check that overlapped a revocation is not
    kept (`serving.security.PrincipalCache.put`)."""
    admin = auth(keys["admin"])
    key_id, key = _new_key(client, admin)
    state = client.app.state.serving
    real, read, release = state.key_lookups._query, threading.Event(), threading.Event()

    def slow(plaintexts: list[str]) -> dict:
        found = real(plaintexts)
        if key in plaintexts:  # read, valid; the answer comes back after the revocation
            read.set()
            release.wait(10)
        return found

    state.key_lookups._query = slow
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.get, "/v1/experiments", headers=auth(key))
        assert read.wait(10)
        assert client.delete(f"/v1/api-keys/{key_id}", headers=admin).status_code == 200
        release.set()
        assert in_flight.result(10).status_code == 200  # asked before the revocation: answered so
    assert client.get("/v1/experiments", headers=auth(key)).status_code == 401


def test_a_key_checked_before_its_revocation_commits_is_not_kept_valid(client, keys, session_factory):
    """The revoke route forgot the key in this replica's cache before its transaction committed: a
    request with the key in that moment read the key as live from the database and cached it for 30 s
    (without Redis, where no feed message comes after the commit to forget it again). The key is
    forgotten once the revocation has committed (`serving.deps.after_commit`)."""
    admin = auth(keys["admin"])
    key_id, key = _new_key(client, admin)
    engine = session_factory.kw["bind"]
    answered: list[int] = []

    def before_commit(conn) -> None:
        revoked = conn.exec_driver_sql("SELECT revoked_at FROM api_keys WHERE id = ?", (key_id,)).scalar()
        if revoked is not None and not answered:  # the revocation, about to commit
            with ThreadPoolExecutor(1) as pool:
                answered.append(
                    pool.submit(client.get, "/v1/experiments", headers=auth(key)).result(10).status_code
                )

    event.listen(engine, "commit", before_commit)
    try:
        assert client.delete(f"/v1/api-keys/{key_id}", headers=admin).status_code == 200
    finally:
        event.remove(engine, "commit", before_commit)
    assert answered == [200]  # not yet revoked when it was asked
    assert client.get("/v1/experiments", headers=auth(key)).status_code == 401


def test_a_query_of_made_up_words_costs_a_few_vocabulary_scans(client, monkeypatch):
    """Each Latin word of four or more letters the index does not know was corrected by a fuzzy scan of
    the whole vocabulary: an anonymous 100-character query of 20 made-up words cost 20 scans (about half a
    second of CPU with 20,000 indexed words, which one merchant's titles can bring), 60 times a minute
    per address. A query's first `CORRECTED_PER_QUERY` distinct unknown words are corrected, the rest
    kept as typed."""
    scanned: list[str] = []
    scan = query.process.extractOne

    def counted(term, *args, **kwargs):
        scanned.append(term)
        return scan(term, *args, **kwargs)

    monkeypatch.setattr(query.process, "extractOne", counted)
    made_up = " ".join(f"qz{a}{b}" for a in "vwxyj" for b in "kfhm")  # 20 words, 99 characters
    found = client.get("/v1/search", params={"q": made_up})
    assert found.status_code == 200, found.text
    assert scanned == ["qzvk", "qzvf", "qzvh"]
    corrected = client.get("/v1/search", params={"q": "prodct"}).json()["understood"]["corrections"]
    assert corrected == {"prodct": "product"}  # a misspelt word is still corrected


def test_made_up_methods_add_no_metrics_series(client):
    """Requests were counted in `/metrics` by method as sent: h11 (`crosscart serve`'s protocol where
    httptools is not installed) takes any token as a method, so each made-up one (`X0`, `X1`, ...) added
    a series to every worker's registry for good, and to every scrape. A method outside HTTP's own is
    counted as `other`."""
    metrics = client.app.state.serving.metrics
    before = generate_latest(metrics.registry).decode().count("\ncrosscart_http_requests_total{")
    for i in range(50):
        assert client.request(f"X{i}", "/v1/products").status_code == 405
    after = generate_latest(metrics.registry).decode()
    assert 'method="X7"' not in after
    assert after.count("\ncrosscart_http_requests_total{") == before + 1  # `other` 405


def test_a_campaigns_many_matching_keywords_enter_one_auction_entry_per_product(api, shop, monkeypatch):  # noqa: F811
    """Every matching keyword of a campaign entered the auction once per product of the campaign, each
    entry scored with exact fractions: one merchant key's campaign of 500 broad keywords (one-, two- and
    three-letter combinations) over its 3 products made any search naming those letters 1,500 entries
    (about 30 us of CPU each), and 100 such campaigns would make every such search seconds long. Of a
    campaign's matching keywords only its best bid can win a product's entry (they share the campaign's
    products, budget and click rate): one entry per campaign and product enters."""
    letters = string.ascii_lowercase
    combos = [" ".join(c) for n in (1, 2, 3) for c in itertools.combinations(letters, n)][:500]
    body = {
        "name": "letters",
        "daily_budget": "10000.00",
        "product_ids": ["P1", "P2", "P4"],
        "keywords": [
            {"keyword": k, "match_type": "broad", "bid": f"{0.5 + i / 1000:.2f}"}
            for i, k in enumerate(combos)
        ],
    }
    made = api.post("/v1/merchants/M1/keyword-campaigns", json=body, headers=auth(_keys(shop)["m1"]))
    assert made.status_code == 201, made.text
    entered: list[int] = []
    auction = serving.search.run_auction

    def counted(candidates, **kwargs):
        candidates = list(candidates)
        entered.append(len(candidates))
        return auction(candidates, **kwargs)

    monkeypatch.setattr(serving.search, "run_auction", counted)
    found = api.get("/v1/search", params={"q": " ".join(letters)})
    assert found.status_code == 200, found.text
    assert entered == [3]


def test_a_merchants_many_campaigns_over_one_product_enter_it_once(api, shop, monkeypatch):  # noqa: F811
    """Campaigns per merchant were not bounded, and each entered a search's auction once per product it
    promotes: one merchant key's 100 campaigns over its 500 products made every matching search 50,000
    entries (~1 s of CPU, `docs/search.md`). A product is promoted by one campaign at a time (not
    ended): the 20 more over the same products are refused (409), the search makes one entry per
    product, and its winners and prices stay those of the campaigns before."""
    m1 = auth(_keys(shop)["m1"])
    rival = {"keyword": "cream", "match_type": "broad", "bid": "0.90"}
    body = {"name": "cream", "daily_budget": "100.00", "keywords": [rival | {"bid": "0.80"}]}
    with transaction(shop) as s:  # another merchant's: sets M1's price
        ads.create_campaign(
            s,
            "M3",
            name="night",
            daily_budget="100.00",
            product_ids=["P6"],
            keywords=[ads.KeywordInput(**rival)],
        )
    made = api.post(
        "/v1/merchants/M1/keyword-campaigns", json=body | {"product_ids": ["P1", "P4"]}, headers=m1
    )
    assert made.status_code == 201, made.text
    entered: list[int] = []
    won: list[list[tuple[str, str, str]]] = []
    auction = serving.search.run_auction

    def counted(candidates, **kwargs):
        candidates = list(candidates)
        entered.append(len(candidates))
        wins = auction(candidates, **kwargs)
        won.append([(w.candidate.product_id, w.candidate.campaign_id, str(w.price)) for w in wins])
        return wins

    monkeypatch.setattr(serving.search, "run_auction", counted)

    def sponsored() -> list[tuple[str, str, str]]:
        found = api.get("/v1/search", params={"q": "cream"})
        assert found.status_code == 200, found.text
        assert [ad["product_id"] for ad in found.json()["sponsored"]] == [p for p, _, _ in won[-1]]
        return won[-1]

    before = sponsored()
    for i in range(20):
        more = body | {"name": f"cream {i}", "product_ids": ["P1", "P2", "P4"]}
        again = api.post("/v1/merchants/M1/keyword-campaigns", json=more, headers=m1)
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "product_already_promoted"
    assert sponsored() == before
    assert entered == [3, 3]
    ended = api.patch(
        f"/v1/keyword-campaigns/{made.json()['campaign_id']}", json={"status": "ended"}, headers=m1
    )
    assert ended.status_code == 200, ended.text
    anew = api.post("/v1/merchants/M1/keyword-campaigns", json=body | {"product_ids": ["P1"]}, headers=m1)
    assert anew.status_code == 201, anew.text


def test_campaigns_created_at_once_over_one_product_are_one(shop, monkeypatch):  # noqa: F811
    """Two campaigns created at once each read the product as free (both created, when each counted
    before the other wrote): the count runs where creation is serialized, so the second counts the first."""
    counted = threading.Barrier(2)
    promoted_elsewhere = ads._promoted_elsewhere

    def both_count_first(*args):
        taken = promoted_elsewhere(*args)
        try:
            counted.wait(timeout=1)  # the other has counted too, unless the lock holds it
        except threading.BrokenBarrierError:
            pass
        return taken

    monkeypatch.setattr(ads, "_promoted_elsewhere", both_count_first)

    def create(i: int) -> str:
        try:
            with transaction(shop) as s:
                ads.create_campaign(s, "M1", name=f"c{i}", daily_budget="10.00", product_ids=["P1"])
        except Conflict as exc:
            return exc.code
        return "created"

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(create, range(2))) == ["created", "product_already_promoted"]


def test_the_api_documentation_cannot_be_framed(client):
    """`/docs` keeps the key pasted into *Authorize* in the browser (`persistAuthorization`: an admin's
    too) and opens an operation from the address (`deepLinking`), yet another site could frame it: a page
    showing `/docs#/access/revoke_key_v1_api_keys__key_id__delete` under decoys has the admin's own
    clicks send the request with the admin's key (clickjacking). Every console page already refused
    framing; `/docs` and `/redoc` now do too."""
    for page in ("/docs", "/redoc"):
        answer = client.get(page)
        assert answer.status_code == 200
        assert answer.headers.get("x-frame-options") == "DENY", page
        assert "frame-ancestors 'none'" in answer.headers.get("content-security-policy", ""), page


def test_metrics_asked_in_a_loop_cost_one_exposition_a_second(make_client, settings, monkeypatch):
    """`/metrics` needs no key from an allowed address (a scraper on the host holds none) and was counted
    against no limit: an address over its anonymous limit still got every answer, each a fresh
    exposition of every series (milliseconds of CPU, on the event loop), as fast as it could ask. One
    exposition answers for `EXPOSITION_SECONDS`, built off the event loop."""
    client = make_client(settings=settings.model_copy(update={"rate_limit_anonymous_per_minute": 3}))
    built = []
    expose = serving.middleware.generate_latest

    def counted(registry):
        built.append(registry)
        return expose(registry)

    monkeypatch.setattr(serving.middleware, "generate_latest", counted)
    started = time.monotonic()
    scraper = TestClient(client.app, client=LOOPBACK)
    answers = [scraper.get("/metrics") for _ in range(20)]
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 20
    assert "crosscart_http_requests_total" in answers[-1].text
    assert len(built) <= 1 + elapsed // serving.middleware.EXPOSITION_SECONDS < 20, (len(built), elapsed)
