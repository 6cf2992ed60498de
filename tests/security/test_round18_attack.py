"""Round 18: a hostile client against the console's merchant pages and what the API leaves to them, on the
tiny marketplace of tests/serving. Each test failed before its fix."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import anyio.to_thread
import pytest
from sqlalchemy import event, func, select

from commerce.access import ConsoleSession
from commerce.ads import AdBudgetDay
from commerce.db import transaction
from commerce.services import ads, catalog, merchants, orders
from commerce.services.access import CONSOLE_SESSIONS_PER_KEY
from commerce.services.checkout import CartLine, checkout
from commerce.services.merchant_orders import orders_to_ship
from serving.console.auth import COOKIE
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in


def test_a_refused_stock_quantity_says_nothing_of_the_product_named(client, keys):
    """A quantity the console's set-stock form refused (`abc`) drew again the shop of the product named in
    the URL: for a made-up id a 500 (it read the merchant of no product), for another merchant's hidden
    product (p09, m3's, pending) a 403 naming another merchant, and for one's own the shop again: which
    ids exist, to a merchant the API answers a made-up id's 404 for them. The quantity is refused before
    any product is read, as the API's 422 is: a merchant key's own shop is drawn again whatever was named."""
    token = sign_in(client, keys["merchant"])  # m1
    for product_id in ("p01", "p05", "p09", "no-such-product"):
        form = {"csrf_token": token, "location": "wh1", "quantity": "abc"}
        page = client.post(f"/console/shop/products/{product_id}/stock", data=form, follow_redirects=False)
        assert page.status_code == 422, (product_id, page.status_code)
        assert "Product p01" in page.text and "Product p05" not in page.text, product_id  # m1's own shop
    sign_in(client, keys["admin"])
    form = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console").text)[1]}
    form |= {"location": "wh1", "quantity": "abc"}
    made_up = client.post("/console/shop/products/no-such-product/stock", data=form, follow_redirects=False)
    assert made_up.status_code == 404
    theirs = client.post("/console/shop/products/p09/stock", data=form, follow_redirects=False)
    assert theirs.status_code == 422 and "Product p09" in theirs.text  # an admin: that product's shop


def test_orders_to_ship_show_a_merchant_only_its_own_goods_value(client, keys, session_factory):
    """The shop's "Orders to ship" showed each order's whole total: of an order holding m2's goods too,
    m1 read what m2 sold (the total less m1's own lines), which the order page (its own lines only) and
    the API (no order for a merchant key) keep from it. The list shows the value of the merchant's lines."""
    with transaction(session_factory) as s:
        order = checkout(s, "s2", [CartLine("p01", 1), CartLine("p05", 2)])  # m1's and m2's goods
        orders.pay_order(s, order.order_id, "PAY-MIXED")
        whole = order.total
        own = sum(line.total for line in order.lines if line.merchant_id == "m1")
    sign_in(client, keys["merchant"])
    row = next(r for r in client.get("/console/shop").text.split("<tr>") if f"Order {order.order_id}<" in r)
    assert f"{own:,.2f}" in row and f"{whole:,.2f}" not in row


def test_a_mixed_orders_value_to_ship_is_each_merchants_own_on_every_database(market):
    """`orders_to_ship` (the list above) gives each merchant its own lines' value, SQLite and PostgreSQL."""
    with transaction(market) as s:
        merchants.reinstate(s, "m_sus", "cleared")
        order = checkout(s, "s1", [CartLine("p_tea", 2), CartLine("p_bad", 3)])  # m_ok's and m_sus's
        orders.pay_order(s, order.order_id, "PAY-MIXED")
        own = {m: sum(li.total for li in order.lines if li.merchant_id == m) for m in ("m_ok", "m_sus")}
    with transaction(market) as s:
        for merchant_id, value in own.items():
            (listed,) = orders_to_ship(s, merchant_id)
            assert (listed.order.order_id, listed.total) == (order.order_id, value), merchant_id


def test_moving_a_made_up_campaign_in_the_console_is_a_404(client, keys):
    """Schedule, launch or complete of a campaign id nobody created drew the campaign page of no campaign
    after the API's 404: a 500 (found by sending every console form hostile values as an admin and a
    marketer). The refusal is shown alone, with its status, as the campaign page shows it."""
    for role in ("marketer", "admin"):
        token = sign_in(client, keys[role])
        for action in ("schedule", "launch", "complete"):
            moved = client.post(
                f"/console/campaigns/no-such-campaign/{action}",
                data={"csrf_token": token},
                follow_redirects=False,
            )
            assert moved.status_code == 404, (role, action, moved.status_code)
            assert "no-such-campaign" in moved.text


@contextmanager
def _statements(engine):
    """The number of statements `engine` runs inside the block (a one-item list, filled on exit)."""
    seen = [0]

    def count(*_args) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_many_look_alike_product_ids_are_read_in_one_query(client, keys, session_factory):
    """A shopper's coupons for up to 100 context products (`?product_id=`) read each id spelt unlike its
    normal form by a `get` of its own: 100 full-width ids made 105 statements where one id made 7, for
    any shopper or storefront key, on every page; a keyword campaign's 500 products, 500 reads. Both read
    their look-alikes in one query (`stored_keys`), as an event batch's are."""
    engine = session_factory.kw["bind"]
    shopper = auth(keys["shopper"])
    counts = []
    for ids in (["p01"], [f"Ｐ{i:03d}" for i in range(100)]):
        with _statements(engine) as seen:
            page = client.get("/v1/shoppers/s1/coupons", params={"product_id": ids}, headers=shopper)
        assert page.status_code == 200
        counts.append(seen[0])
    assert counts[1] <= counts[0] + 1, counts
    merchant = auth(keys["merchant"])
    keyword = {"keyword": "serum", "match_type": "broad", "bid": "1"}
    counts = []
    for ids in (["Ｐ000"], [f"Ｐ{i:03d}" for i in range(500)]):  # nobody's products: refused after the read
        body = {"name": "x", "daily_budget": "10", "product_ids": ids, "keywords": [keyword]}
        with _statements(engine) as seen:
            made = client.post("/v1/merchants/m1/keyword-campaigns", json=body, headers=merchant)
        assert made.status_code == 422, made.text
        counts.append(seen[0])
    assert counts[1] <= counts[0] + 1, counts


def test_a_key_signing_in_in_a_loop_keeps_its_newest_console_sessions(client, keys, session_factory):
    """Any key may sign in to the console (a shopper's too), and each sign-in without the cookie kept a
    session row for its 8 hours: one address at the anonymous rate left 28,800 live rows. A key keeps its
    newest `CONSOLE_SESSIONS_PER_KEY`; the newest still work, the oldest are refused."""
    cookies = []
    for _ in range(CONSOLE_SESSIONS_PER_KEY + 5):
        sign_in(client, keys["shopper"])  # clears the cookie first: a new browser each time
        cookies.append(client.cookies[COOKIE])
    with transaction(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(ConsoleSession)) == CONSOLE_SESSIONS_PER_KEY
    for i, cookie in enumerate(cookies):
        client.cookies.clear()
        client.cookies.set(COOKIE, cookie, path="/console")
        home = client.get("/console", follow_redirects=False)
        assert (home.status_code == 200) == (i >= 5), (i, home.status_code)


def test_a_page_of_a_shoppers_orders_reads_their_lines_in_one_query(client, keys, session_factory):
    """A shopper's order list read each order's lines by a query of its own: a shopper key that placed and
    cancelled 100 orders (two requests each, nothing paid) made every page of 100 cost 103 statements
    where a page of one cost 6. The page's lines are read in one query."""
    with transaction(session_factory) as s:
        for _ in range(100):
            order = checkout(s, "s1", [CartLine("p01", 1), CartLine("p03", 1)])
            orders.cancel_order(s, order.order_id, "changed my mind")
    shopper, counts = auth(keys["shopper"]), []
    for limit in (1, 100):
        with _statements(session_factory.kw["bind"]) as seen:
            page = client.get("/v1/shoppers/s1/orders", params={"limit": limit}, headers=shopper)
        assert page.status_code == 200 and len(page.json()["items"]) == limit
        assert all(len(o["lines"]) == 2 for o in page.json()["items"][:-1])  # the seed's order 1 last
        counts.append(seen[0])
    assert counts[1] <= counts[0] + 1, counts


def test_a_merchants_lists_read_each_page_in_a_few_queries(client, keys, session_factory):
    """A merchant's product list read each product's stock, and its keyword campaign list each campaign's
    products and keywords, by queries of their own: 60 products took 63 statements, 60 campaigns (ended
    ones count, and a merchant key makes them at will) 123, on every page. Each page reads them at once."""
    with transaction(session_factory) as s:
        for i in range(60):
            product = catalog.ProductInput(
                merchant_id="m1", sku=f"SKU-more-{i}", title=f"More {i}", category_id="beauty", brand="B",
                origin_country="JP", price="10", fulfillment="bonded", stock={"wh1": 3},
            )  # fmt: skip
            catalog.create_product(s, product)
            keywords = [ads.KeywordInput(f"kw{i}", "broad", "1")]
            made = ads.create_campaign(
                s, "m1", name=f"c{i}", daily_budget="10", product_ids=["p01"], keywords=keywords
            )
            ads.update_campaign(s, made.campaign_id, status="ended")
    merchant = auth(keys["merchant"])
    client.get("/v1/merchants/m1", headers=merchant)  # the key looked up and cached
    for path in ("/v1/merchants/m1/products", "/v1/merchants/m1/keyword-campaigns"):
        counts = []
        for limit in (1, 60):
            with _statements(session_factory.kw["bind"]) as seen:
                page = client.get(path, params={"limit": limit}, headers=merchant)
            assert page.status_code == 200 and len(page.json()["items"]) == limit
            counts.append(seen[0])
        assert counts[1] <= counts[0] + 1, (path, counts)
    campaign = client.get("/v1/merchants/m1/keyword-campaigns", params={"limit": 1}, headers=merchant).json()
    assert campaign["items"][0]["product_ids"] == ["p01"] and len(campaign["items"][0]["keywords"]) == 1


def test_the_consoles_keyword_campaign_list_reads_todays_spend_in_one_query(client, keys, session_factory):
    """The console's keyword ads page read each listed campaign's spend today by a query of its own: a
    merchant's 61 campaigns (ended ones count) took 68 statements where one took 8, on every view. The
    page's spend is read at once, each campaign still shown its own."""
    with transaction(session_factory) as s:
        first = ads.create_campaign(
            s,
            "m1",
            name="c",
            daily_budget="10",
            product_ids=["p01"],
            keywords=[ads.KeywordInput("kw", "broad", "1")],
        )
        s.add(
            AdBudgetDay(
                campaign_id=first.campaign_id, day=ads.day_key(ads.billing_clock(s)), budget=10, spent=3.5
            )
        )
    sign_in(client, keys["merchant"])
    counts = []
    for more in (0, 60):
        with transaction(session_factory) as s:
            for i in range(more):
                keywords = [ads.KeywordInput(f"kw{i}", "broad", "1")]
                made = ads.create_campaign(
                    s, "m1", name=f"c{i}", daily_budget="10", product_ids=["p02"], keywords=keywords
                )
                ads.update_campaign(s, made.campaign_id, status="ended")
        client.get("/console/keyword-campaigns")
        with _statements(session_factory.kw["bind"]) as seen:
            page = client.get("/console/keyword-campaigns")
        assert page.status_code == 200 and f'id="spent-{first.campaign_id}">3.50<' in page.text
        counts.append(seen[0])
    assert counts[1] <= counts[0] + 1, counts


def test_a_made_up_search_category_waits_for_a_database_slot(client, session_factory):
    """`GET /v1/search?category=` of a category the catalog snapshot does not know is looked up in the
    database, in a session of its own beside the slots that bound how many requests use it at once: any
    anonymous client sending made-up categories read the database with every slot taken (2 statements a
    request, none waiting). It now waits for a slot like every other read (`serving.deps.read_in_slot`):
    503 past the deadline with nothing read, the 404 of an unknown category otherwise."""
    gate = client.app.state.serving.db_gate
    gate.wait_seconds = 0.2
    query = {"q": "product", "category": "no-such-category"}
    for _ in range(gate.requests):
        client.portal.call(gate._request_slots.acquire)
    try:
        with _statements(session_factory.kw["bind"]) as seen:
            busy = client.get("/v1/search", params=query)
    finally:
        for _ in range(gate.requests):
            gate._request_slots.release()
    assert (busy.status_code, seen[0]) == (503, 0)
    assert client.get("/v1/search", params=query).status_code == 404


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"q": "product", "category": "no-such-category"}, None),
        ({"q": "product", "shopper_id": "\uff53\uff11"}, "storefront"),  # ｓ１: a look-alike of s1
    ],
)
def test_searches_reading_the_database_do_not_starve_the_thread_pool(client, keys, params, key):
    """`GET /v1/search` was a sync endpoint (a worker thread) that ran `read_in_slot` for an unknown
    `?category=` or a look-alike `?shopper_id=` through `from_thread.run`, which needs a second worker
    thread for the read: with every thread held by such a request none was left for the reads, and all
    hung (16 at once with 4 threads, anonymous for a category). The reads are awaited on the event loop
    now, the search alone on a thread."""
    limiter = client.portal.call(_default_thread_limiter)
    tokens = limiter.total_tokens
    client.portal.call(setattr, limiter, "total_tokens", 4)
    headers = auth(keys[key]) if key else {}
    pool = ThreadPoolExecutor(16)
    try:
        sent = [pool.submit(client.get, "/v1/search", params=params, headers=headers) for _ in range(16)]
        codes = [f.result(timeout=20).status_code for f in sent]
    finally:
        client.portal.call(setattr, limiter, "total_tokens", tokens)  # wakes a hung request, if any
        pool.shutdown(wait=True)
    assert set(codes) <= {404 if key is None else 200, 503} and (404 in codes or 200 in codes), codes


async def _default_thread_limiter():
    return anyio.to_thread.current_default_thread_limiter()


@pytest.mark.parametrize(
    ("role", "path", "field"),
    [
        ("merchant", "/console/shop/products", "title"),
        ("merchant", "/console/keyword-campaigns/new", "keyword_0"),
        ("merchant", "/console/keyword-campaigns/new", "other_product_ids"),
        ("data_scientist", "/console/experiments/new", "variant0_name"),
        ("marketer", "/console/coupons/new", "value"),
    ],
)
def test_a_file_sent_for_a_console_forms_text_is_a_422(client, keys, role, path, field):
    """The console's forms read whole (`request.form()`) took a multipart file part where a text field
    was expected and called `.strip()` on it: a 500 (5 of 9 forms tried; the others, read field by field,
    were FastAPI's 422). Every console form is now text only, a file part the 422 FastAPI gives; the
    CSRF token is still checked first."""
    token = sign_in(client, keys[role])
    upload = {field: ("a.txt", b"xyz", "text/plain")}
    sent = client.post(path, data={"csrf_token": token}, files=upload, follow_redirects=False)
    assert sent.status_code == 422, sent.status_code
    forged = client.post(path, data={"csrf_token": "forged"}, files=upload, follow_redirects=False)
    assert forged.status_code == 403
