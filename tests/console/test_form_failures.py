"""Every console form with typed input, when the database is busy as it is sent (SQLite's write lock held
past the busy timeout, a PostgreSQL lock wait: an OperationalError from the API's code the form calls),
answers 503 with Retry-After and the same form again, holding every value that was typed, with a message
that nothing was saved; and nothing was (the form's transaction is rolled back: the API's code did its
writes before the database refused). It was the generic error page, the typed form lost.

The API's code runs for real up to the refusal (`busy_after`), so a half-saved form would show."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, exc, func, select

from commerce.access import ApiKey
from commerce.access import ConsoleSession as ConsoleSessionRow
from commerce.ads import AdKeyword, KeywordCampaign, KeywordCampaignProduct
from commerce.campaigns import Campaign, CampaignMember
from commerce.catalog import Product, Stock
from commerce.coupons import Coupon
from commerce.db import make_session_factory, transaction
from commerce.errors import ValidationError as DomainValidationError
from commerce.experiments import Experiment
from commerce.logistics import ShippingRule
from commerce.merchants import Merchant
from commerce.services.access import CONSOLE_SESSIONS_PER_KEY, create_api_key, hash_key
from serving.console import admin, auth, campaigns, home, keyword_ads, science, shop
from serving.console import coupons as coupon_pages
from serving.console.web import FormRoute
from serving.routers import catalog, coupons, experiments, logistics, marketing, search
from serving.routers import keys as keys_api
from tests.conftest import free_port
from tests.resilience.conftest import fault_app, fault_settings, make_keys, proxied_engine, seeded_factory
from tests.serving.test_console import sign_in

CONSOLE_MODULES = (admin, campaigns, coupon_pages, home, keyword_ads, science, shop)


def busy() -> exc.OperationalError:
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"
    return exc.OperationalError("UPDATE ...", {}, locked)


def busy_after(monkeypatch, module, name: str, real: bool = True) -> None:
    """`module.name` (an API router function a console form calls) does its work, its rows written into
    the request's transaction, then the database refuses: as a write meeting a lock held past the wait."""
    work = getattr(module, name)

    def refused(*args, **kwargs):
        if real:
            work(*args, **kwargs)
        raise busy()

    monkeypatch.setattr(module, name, refused)


class FormValues(HTMLParser):
    """What the page's forms posting to `action` would send: each input's value (checkboxes and radios
    only when checked), each select's selected option (else its first), each textarea's text."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside, self.values = action, False, {}
        self.select: str | None = None
        self.options: list[tuple[str, bool]] = []
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("action") == self.action
        elif not self.inside:
            return
        elif tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            default = "on" if a.get("type") in ("checkbox", "radio") else ""
            self.values.setdefault(a["name"], []).append(a.get("value", default))
        elif tag == "select":
            self.select, self.options = a.get("name"), []
        elif tag == "option" and self.select:
            self.options.append((a.get("value"), "selected" in a))
        elif tag == "textarea":
            self.textarea = a.get("name")
            self.values.setdefault(self.textarea, []).append("")

    def handle_endtag(self, tag):
        if tag == "select" and self.select:
            chosen = [v for v, selected in self.options if selected] or [self.options[0][0]]
            self.values.setdefault(self.select, []).append(chosen[0])
            self.select = None
        elif tag == "textarea":  # a browser drops the newline just after <textarea>
            self.values[self.textarea][-1] = self.values[self.textarea][-1].removeprefix("\n")
            self.textarea = None
        elif tag == "form":
            self.inside = False

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea][-1] += data


def form_values(page: str, action: str) -> dict[str, list[str]]:
    parser = FormValues(action)
    parser.feed(page)
    return parser.values


def count(session, column, value) -> int:
    return session.scalar(select(func.count()).where(column == value))


@dataclass
class Form:
    """A console form: who sends it, where, what is typed (checked against the page, all of it), what
    else it sends, which API router function it calls, and what it would have stored."""

    role: str
    action: str | Callable[[object], str]  # or its address read from the database (an id made earlier)
    typed: dict[str, str | list[str]]
    calls: tuple[object, str]
    stored: Callable[[object], bool]
    hidden: dict[str, str] = field(default_factory=dict)
    setup: Callable[[object, str], None] | None = None
    real: bool = True  # the router function runs before the refusal (False: it would refuse first)
    saved: str = "Nothing was saved"  # what the message says was kept


WINDOW = {"starts_at": "2031-03-01T09:30", "ends_at": "2031-03-08T18:00"}


def _new_keyword_campaign(client, token: str) -> None:
    form = {"csrf_token": token, "name": "kc-base", "daily_budget": "5.00", "product_ids": ["p01"],
            "keyword_0": "cream", "match_0": "broad", "bid_0": "0.40"}  # fmt: skip
    made = client.post("/console/keyword-campaigns/new", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text


def _keyword_campaign(session) -> KeywordCampaign:
    return session.scalars(select(KeywordCampaign).where(KeywordCampaign.name == "kc-base")).one()


def _kc_action(suffix: str = "") -> Callable[[object], str]:
    def action(session) -> str:
        campaign = _keyword_campaign(session)
        if suffix == "/bid":
            keyword = session.scalars(
                select(AdKeyword).where(AdKeyword.campaign_id == campaign.campaign_id)
            ).one()
            return f"/console/keyword-campaigns/{campaign.campaign_id}/keywords/{keyword.keyword_id}"
        return f"/console/keyword-campaigns/{campaign.campaign_id}{suffix}"

    return action


FORMS = {
    "new campaign": Form(
        "marketer", "/console/campaigns/new",
        {"name": "Autumn push", "channel": "email", "budget": "4321.50", "control_share": "0.15", **WINDOW,
         "kind": "percent_off", "value": "12", "cap": "45", "min_spend": "150", "scope": "category:beauty",
         "per_shopper_limit": "2", "usage_limit": "300"},
        (coupons, "create_coupon"),  # after the campaign's own row
        lambda s: count(s, Campaign.name, "Autumn push") > 0,
    ),
    "plan": Form(
        "marketer", lambda s: f"/console/campaigns/{_draft_id(s)}/plan",
        {"budget": "777.25", "region": "east", "segment": "loyal", "margin_rate": "0.42"},
        (marketing, "plan_campaign"),  # no uplift model served here: it would refuse before planning
        lambda s: count(s, CampaignMember.campaign_id, _draft_id(s)) > 0,
        setup=lambda client, token: _draft(client, token),
        real=False,
        saved="The budget was saved, the plan was not",  # its own transaction, so the planner reads it
    ),
    "new coupon": Form(
        "marketer", "/console/coupons/new",
        {"coupon_id": "c-typed", "name": "Typed coupon", "kind": "percent_off", "value": "15", "cap": "60",
         "min_spend": "199", "scope": "category:beauty", "per_shopper_limit": "3", "usage_limit": "40",
         "budget": "900", **WINDOW, "requires_grant": "on"},
        (coupons, "create_coupon"),
        lambda s: s.get(Coupon, "c-typed") is not None,
    ),
    "edit coupon": Form(
        "marketer", "/console/coupons/c-10off",
        {"name": "Ten off, renamed", "kind": "amount_off", "value": "12", "cap": "", "min_spend": "88",
         "scope": "platform", "per_shopper_limit": "4", "usage_limit": "77", "budget": "1500", **WINDOW},
        (coupons, "edit_coupon"),
        lambda s: s.get(Coupon, "c-10off").name == "Ten off, renamed",
    ),
    "new experiment": Form(
        "data_scientist", "/console/experiments/new",
        {"name": "typed-exp", "description": "ranking test, typed by hand", "layer": "ranking",
         "traffic": "0.5", "primary_metric": "revenue_per_shopper", "planned_units": "1200",
         "inference": "msprt", "variant0_name": "control", "variant0_weight": "2",
         "variant0_alias": "champion", "variant1_name": "treatment", "variant1_weight": "1",
         "variant1_alias": "challenger"},
        (experiments, "create_experiment"),
        lambda s: count(s, Experiment.name, "typed-exp") > 0,
    ),
    "new API key": Form(
        "admin", "/console/keys",
        {"role": "merchant", "name": "m2 warehouse script", "shopper_id": "", "merchant_id": "m2"},
        (keys_api, "create_key"),
        lambda s: count(s, ApiKey.name, "m2 warehouse script") > 0,
    ),
    "merchant rejection": Form(
        "admin", "/console/merchants/m3/review",
        {"reason": "licence number does not match the registry"},
        (catalog, "review"),
        lambda s: s.get(Merchant, "m3").status != "pending",
        hidden={"decision": "reject"},
    ),
    "shipping rule": Form(
        "merchant", "/console/shop/shipping-rule",
        {"partner_id": "", "max_days": "6"},
        (logistics, "set_shipping_rule"),
        lambda s: s.get(ShippingRule, "m1") is not None,
    ),
    "set stock": Form(
        "merchant", "/console/shop/products/p01/stock",
        {"location": "wh1", "quantity": "42"},
        (catalog, "set_stock"),
        lambda s: s.scalar(select(Stock.quantity).where(Stock.product_id == "p01", Stock.location == "wh1"))
        == 42,
    ),
    "new product": Form(
        "merchant", "/console/shop/products",
        {"title": "Sakura hand cream", "sku": "SKU-TYPED", "category_id": "beauty", "brand": "B",
         "origin_country": "JP", "price": "129.00", "fulfillment": "direct_mail", "location_0": "ow1",
         "units_0": "7", "location_1": "", "units_1": "", "location_2": "", "units_2": ""},
        (catalog, "publish_product"),
        lambda s: count(s, Product.sku, "SKU-TYPED") > 0,
    ),
    "new keyword campaign": Form(
        "merchant", "/console/keyword-campaigns/new",
        {"name": "typed kc", "daily_budget": "12.50", "product_ids": ["p01", "p02"],
         "other_product_ids": "", "keyword_0": "hand cream", "match_0": "phrase", "bid_0": "0.65",
         "keyword_1": "sakura", "match_1": "exact", "bid_1": "0.30"},
        (search, "create_keyword_campaign"),
        lambda s: count(s, KeywordCampaign.name, "typed kc") > 0,
    ),
    "keyword campaign budget": Form(
        "merchant", _kc_action(),
        {"daily_budget": "33.30"},
        (search, "update_keyword_campaign"),
        lambda s: _keyword_campaign(s).daily_budget == Decimal("33.30"),
        setup=_new_keyword_campaign,
    ),
    "new keyword": Form(
        "merchant", _kc_action("/keywords"),
        {"keyword": "night cream", "match_type": "exact", "bid": "0.77"},
        (search, "add_keyword"),
        lambda s: count(s, AdKeyword.bid, Decimal("0.77")) > 0,
        setup=_new_keyword_campaign,
    ),
    "keyword bid": Form(
        "merchant", _kc_action("/bid"),
        {"bid": "0.91"},
        (search, "update_keyword"),
        lambda s: count(s, AdKeyword.bid, Decimal("0.91")) > 0,
        setup=_new_keyword_campaign,
    ),
}  # fmt: skip


def _draft(client, token: str) -> None:
    form = {"csrf_token": token, "name": "Plan me", "channel": "site", "budget": "500",
            "control_share": "0.2", **WINDOW, "kind": "amount_off", "value": "10"}  # fmt: skip
    assert client.post("/console/campaigns/new", data=form, follow_redirects=False).status_code == 303


def _draft_id(session) -> str:
    return session.scalars(select(Campaign.campaign_id).where(Campaign.name == "Plan me")).one()


def _opened(form, client, keys, session_factory) -> tuple[str, str]:
    """Signed in as the form's role, its setup done: the CSRF token and the address it posts to."""
    token = sign_in(client, keys[form.role])
    if form.setup:
        form.setup(client, token)
    with transaction(session_factory) as s:
        return token, form.action(s) if callable(form.action) else form.action


@pytest.mark.parametrize("name", FORMS)
def test_a_form_the_busy_database_refused_comes_back_filled_in_and_nothing_is_saved(
    client, keys, session_factory, monkeypatch, name
):
    form = FORMS[name]
    token, action = _opened(form, client, keys, session_factory)
    with transaction(session_factory) as s:
        assert not form.stored(s)
    busy_after(monkeypatch, *form.calls, real=form.real)

    r = client.post(action, data={"csrf_token": token, **form.hidden, **form.typed}, follow_redirects=False)

    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert f"{form.saved}: the database is busy right now; retry shortly." in r.text
    sent = form_values(r.text, action)
    typed = {k: v if isinstance(v, list) else [v] for k, v in form.typed.items()}
    assert {k: sent.get(k) for k in typed} == typed
    with transaction(session_factory) as s:
        assert not form.stored(s)


def test_a_form_the_unreachable_database_refused_keeps_its_input_and_the_outage(client, keys, monkeypatch):
    """A lost database is answered as the API answers it (503, Retry-After 5, reported down once), the form
    filled in; the request's commit afterwards has nothing to commit and does not report the database
    back (it did, so the next request found it "up")."""
    token = sign_in(client, keys["marketer"])
    lost = sqlite3.OperationalError("unable to open database file")
    lost.sqlite_errorname = "SQLITE_CANTOPEN"

    def unreachable(*args, **kwargs):
        raise exc.OperationalError("INSERT ...", {}, lost)

    monkeypatch.setattr(marketing, "create_campaign", unreachable)
    form = FORMS["new campaign"]
    r = client.post(form.action, data={"csrf_token": token, **form.typed}, follow_redirects=False)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "Nothing was saved: the database is unavailable; retry shortly." in r.text
    assert form_values(r.text, form.action)["name"] == ["Autumn push"]
    assert not client.app.state.serving.db_health.up


def test_the_plan_refused_by_a_busy_database_answers_htmx_with_its_fragment(client, keys, monkeypatch):
    """htmx posts the plan form and swaps only its answer (#plan-result): the form, outside it, keeps the
    input in the browser; the answer is the fragment with the message, 503 (console.js swaps a 503
    fragment; a whole page, the console's error page, it leaves as a failed request)."""
    token = sign_in(client, keys["marketer"])
    _draft(client, token)
    with transaction(client.app.state.serving.session_factory) as s:
        campaign_id = _draft_id(s)
    busy_after(monkeypatch, marketing, "plan_campaign", real=False)
    r = client.post(
        f"/console/campaigns/{campaign_id}/plan",
        data={"csrf_token": token, "budget": "777.25"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.text.lstrip().startswith('<div id="plan-result"')
    assert "The budget was saved, the plan was not: the database is busy right now; retry" in r.text
    assert 'id="campaign-budget" hx-swap-oob="true">777.25<' in r.text  # the figure says so too


def test_a_plan_refused_for_its_state_answers_the_apis_409(client, keys, session_factory):
    """Planning a campaign past its draft is a 409 from the API (`InvalidState`); the console's plan
    form answered any refusal but a 503 with 422, though `Refusal` promises the API's status. Now 409,
    with htmx its fragment holding the message (console.js swaps a refusal's fragment, any status);
    without, the page shows it (a scheduled campaign with no audience yet showed none)."""
    token = sign_in(client, keys["marketer"])
    _draft(client, token)
    with transaction(session_factory) as s:
        campaign_id = _draft_id(s)
        s.get(Campaign, campaign_id).status = "scheduled"
    form = {"csrf_token": token, "budget": "300"}
    path = f"/console/campaigns/{campaign_id}/plan"
    fragment = client.post(path, data=form, headers={"HX-Request": "true"})
    assert fragment.status_code == 409, fragment.text
    assert fragment.text.lstrip().startswith('<div id="plan-result"') and "only a draft" in fragment.text
    page = client.post(path, data=form)
    assert page.status_code == 409 and "only a draft" in page.text and "<html" in page.text


@contextmanager
def writer_holding(url: str, table: str):
    """Another writer in the middle of a transaction that blocks writes to `table`: SQLite's write lock
    (BEGIN IMMEDIATE: the whole database's), PostgreSQL's lock on the table (reads go on)."""
    engine = create_engine(url)
    try:
        with engine.connect() as other:
            if engine.dialect.name == "sqlite":
                other.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                other.begin()
                other.exec_driver_sql(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            yield
            other.rollback()
    finally:
        engine.dispose()


LOCKED = {"new coupon": "coupons", "edit coupon": "coupons", "set stock": "stock"}


@pytest.mark.parametrize("name", LOCKED)
def test_a_form_sent_while_another_writer_holds_the_lock_comes_back_filled_in(database_url, tmp_path, name):
    """No simulation: the form's write waits for a lock another writer holds past the wait (SQLite's busy
    timeout, PostgreSQL's `lock_timeout`) and the database refuses it. The page drawn again reads (the
    coupon, the shop): read-only, it does not wait for SQLite's write lock in turn."""
    factory = seeded_factory(database_url, lock_timeout=0.5, statement_timeout=2)
    keys = make_keys(factory)
    with transaction(factory) as s:
        keys["merchant"] = create_api_key(s, "merchant", merchant_id="m1")[1]
    form = FORMS[name]
    with TestClient(fault_app(fault_settings(tmp_path), factory)) as client:
        token = sign_in(client, keys[form.role])
        with writer_holding(database_url, LOCKED[name]):
            r = client.post(form.action, data={"csrf_token": token, **form.typed}, follow_redirects=False)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "Nothing was saved: the database is busy right now; retry shortly." in r.text
        sent = form_values(r.text, form.action)
        assert {k: sent.get(k) for k in form.typed} == {k: [v] for k, v in form.typed.items()}
        assert client.app.state.serving.db_health.up  # busy, not down
    with transaction(factory) as s:
        assert not form.stored(s)
    factory.kw["bind"].dispose()


def lost() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("unable to open database file")
    error.sqlite_errorname = "SQLITE_CANTOPEN"
    return error


class Outage:
    """The test database going away: while it is gone every statement on its engine fails as on a
    database file that cannot be opened (the connection itself is not needed for that)."""

    def __init__(self, engine, monkeypatch) -> None:
        self.engine, self.monkeypatch, self.gone, self.restore = engine, monkeypatch, False, []
        event.listen(engine, "before_cursor_execute", self._refuse)

    def _refuse(self, *args) -> None:
        if self.gone:
            raise lost()

    def begin(self) -> None:
        self.gone = True

    def begin_at(self, module, name: str, refusal: Exception | None = None) -> None:
        """When the console form calls `module.name` (an API router function): after the session was
        read, so only that call and the statements after it (the page drawn again) fail. With `refusal`,
        the call raises it (a rule refusing the input), the database gone just after."""
        work = getattr(module, name)

        def gone(*args, **kwargs):
            self.begin()
            raise refusal or exc.OperationalError("UPDATE ...", {}, lost())

        self.monkeypatch.setattr(module, name, gone)
        self.restore.append(lambda: self.monkeypatch.setattr(module, name, work))

    def end(self) -> None:
        self.gone = False
        while self.restore:
            self.restore.pop()()

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._refuse)


@pytest.fixture
def outage(session_factory, monkeypatch):
    down = Outage(session_factory.kw["bind"], monkeypatch)
    yield down
    down.close()


#: The forms whose page reads the database to draw the form again (the others draw it from the request:
#: a new campaign, coupon or experiment, kept since the busy database's change).
READ_TO_REDRAW = (
    "plan", "edit coupon", "new API key", "merchant rejection", "shipping rule", "set stock", "new product",
    "new keyword campaign", "keyword campaign budget", "new keyword", "keyword bid",
)  # fmt: skip


@pytest.mark.parametrize("name", READ_TO_REDRAW)
def test_a_form_sent_as_the_database_goes_down_comes_back_filled_in_though_its_page_cannot_be_read(
    client, keys, session_factory, outage, name
):
    """The form's page reads the database to draw it again (the shop, the keys list, the merchant queue,
    a keyword campaign, a coupon, a campaign), and the database is down: the form alone comes back,
    every typed value in it with the session's CSRF token, 503 and Retry-After, the rest of the page a
    note; nothing was saved, and sent again once the database is back, it is. It was the generic
    "Unavailable" page."""
    form = FORMS[name]
    token, action = _opened(form, client, keys, session_factory)
    outage.begin_at(*form.calls)

    r = client.post(action, data={"csrf_token": token, **form.hidden, **form.typed}, follow_redirects=False)

    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    assert f"{form.saved}: the database is unavailable; retry shortly." in r.text
    assert "The rest of this page could not be loaded" in r.text
    sent = form_values(r.text, action)
    typed = {k: v if isinstance(v, list) else [v] for k, v in {**form.hidden, **form.typed}.items()}
    assert {k: sent.get(k) for k in typed} == typed
    assert sent["csrf_token"] == [token]
    assert not client.app.state.serving.db_health.up

    outage.end()
    with transaction(session_factory) as s:
        assert not form.stored(s)
    again = client.post(action, data=sent, follow_redirects=False)
    if form.real:  # the plan would be refused for want of a served uplift model
        assert again.status_code in (201, 303), again.text
        with transaction(session_factory) as s:
            assert form.stored(s)


@pytest.mark.parametrize("name", READ_TO_REDRAW)
def test_a_form_a_rule_refused_comes_back_filled_in_though_its_page_cannot_be_read(
    client, keys, session_factory, outage, name
):
    """A rule refuses the form (422), and the page drawn again with the refusal reads the database, which
    has just gone: the form alone comes back with the rule's refusal and every typed value, the rest of
    the page a note; corrected (here: the rule lifted) and sent again once the database is back, it is
    saved. It was the generic "Unavailable" page, the refusal and the typed form lost."""
    form = FORMS[name]
    token, action = _opened(form, client, keys, session_factory)
    outage.begin_at(*form.calls, refusal=DomainValidationError("the typed value breaks a rule"))

    r = client.post(action, data={"csrf_token": token, **form.hidden, **form.typed}, follow_redirects=False)

    assert r.status_code == 422, r.text
    assert "the typed value breaks a rule" in r.text
    assert "The rest of this page could not be loaded" in r.text
    sent = form_values(r.text, action)
    typed = {k: v if isinstance(v, list) else [v] for k, v in {**form.hidden, **form.typed}.items()}
    assert {k: sent.get(k) for k in typed} == typed
    assert sent["csrf_token"] == [token]

    outage.end()
    with transaction(session_factory) as s:
        assert not form.stored(s)
    again = client.post(action, data=sent, follow_redirects=False)
    if form.real:
        assert again.status_code in (201, 303), again.text
        with transaction(session_factory) as s:
            assert form.stored(s)


@pytest.mark.parametrize("name", FORMS)
def test_a_form_sent_while_the_database_is_down_comes_back_filled_in(
    client, keys, session_factory, outage, name
):
    """The database is already down when the form is sent: the browser's session, which the database
    confirmed a moment ago, is taken from memory (as the API's keys are) instead of failing the request,
    and every form comes back with what was typed, 503 and Retry-After, nothing saved; sent again once
    the database is back, it is. It was the generic "Unavailable" page: the session could not be read."""
    form = FORMS[name]
    token, action = _opened(form, client, keys, session_factory)
    assert client.get("/console").status_code == 200  # the session, confirmed by the database

    outage.begin()
    r = client.post(action, data={"csrf_token": token, **form.hidden, **form.typed}, follow_redirects=False)

    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    assert "Nothing was saved: the database is unavailable; retry shortly." in r.text
    sent = form_values(r.text, action)
    typed = {k: v if isinstance(v, list) else [v] for k, v in form.typed.items()}
    assert {k: sent.get(k) for k in typed} == typed
    assert sent["csrf_token"] == [token]
    outage.end()
    with transaction(session_factory) as s:
        assert not form.stored(s)
    again = client.post(action, data=sent, follow_redirects=False)
    if form.real:
        assert again.status_code in (201, 303), again.text
        with transaction(session_factory) as s:
            assert form.stored(s)


def test_a_signed_out_session_is_not_taken_from_memory_while_the_database_is_down(client, keys, outage):
    """Only a session the database confirmed and nobody ended since is taken from memory: a copy of a
    cookie signed out before the outage is the error page, as a session never seen is."""
    token = sign_in(client, keys["admin"])
    cookie = client.cookies.get("crosscart_console")
    assert client.get("/console/keys").status_code == 200
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 200
    client.cookies.set("crosscart_console", cookie, path="/console")
    outage.begin()
    typed = {"csrf_token": token, "role": "admin", "name": "after sign-out"}
    r = client.post("/console/keys", data=typed, follow_redirects=False)
    assert r.status_code == 503 and "after sign-out" not in r.text


def test_a_session_signed_out_as_it_was_read_is_not_kept_in_memory(client, keys, outage, monkeypatch):
    """A request that read the session just before it was signed out (on another request) does not
    leave it in memory: through an outage after, its cookie is the error page, not a kept form."""
    token = sign_in(client, keys["admin"])
    sessions, read = client.app.state.console_sessions, auth._principal_for

    def signed_out_meanwhile(state, session_id):
        principal = read(state, session_id)  # read before the sign-out committed
        sessions.seen.discard(hash_key(session_id))  # the sign-out
        return principal

    monkeypatch.setattr(auth, "_principal_for", signed_out_meanwhile)
    assert client.get("/console/keys").status_code == 200
    monkeypatch.setattr(auth, "_principal_for", read)
    outage.begin()
    r = client.post("/console/keys", data={"csrf_token": token, "role": "admin", "name": "signed out"})
    assert r.status_code == 503 and "signed out" not in r.text


def _second_admin(session_factory) -> tuple[int, str, str]:
    """(id, key hash, plaintext) of a new admin key: the fixture's admin may revoke it."""
    with transaction(session_factory) as s:
        key, plaintext = create_api_key(s, "admin", name="second admin")
        return key.id, key.key_hash, plaintext


def _refused_from_memory(client, token: str, name: str) -> bool:
    """Through the outage, the admin form sent with this browser's cookie is the error page, not the form
    kept (which the session, taken from memory, would have earned)."""
    r = client.post("/console/keys", data={"csrf_token": token, "role": "admin", "name": name})
    return r.status_code == 503 and name not in r.text


def test_a_revoked_keys_session_is_not_taken_from_memory_while_the_database_is_down(
    client, keys, session_factory, outage
):
    """A key revoked over the API while the database answered signs its console sessions out of this
    replica's memory too: through an outage after, its cookie does not pass AdminOnly. It got the form."""
    key_id, _, plaintext = _second_admin(session_factory)
    token = sign_in(client, plaintext)
    assert client.get("/console/keys").status_code == 200  # the session, confirmed by the database
    revoked = client.delete(f"/v1/api-keys/{key_id}", headers={"Authorization": f"Bearer {keys['admin']}"})
    assert revoked.status_code == 200
    outage.begin()
    assert _refused_from_memory(client, token, "after revocation")


def test_a_key_revoked_on_another_replica_signs_its_sessions_out_of_this_ones_memory(
    client, session_factory, outage
):
    """The revocation feed's message (the key's hash, `serving.revocations`) reaches the console's
    memory as it reaches the API's key cache."""
    _, key_hash, plaintext = _second_admin(session_factory)
    token = sign_in(client, plaintext)
    assert client.get("/console/keys").status_code == 200
    client.app.state.serving.principals.discard(key_hash)  # what the feed does on a message
    outage.begin()
    assert _refused_from_memory(client, token, "revoked elsewhere")


def test_a_replaced_session_is_not_taken_from_memory_while_the_database_is_down(client, keys, outage):
    """Signing in again in a browser ends its previous session (`sign_in(replacing=...)`): a copy of the
    old cookie is refused through an outage, not served from memory."""
    token = sign_in(client, keys["admin"])
    assert client.get("/console/keys").status_code == 200
    old = client.cookies.get("crosscart_console")
    r = client.post("/console/sign-in", data={"api_key": keys["admin"], "csrf_token": token})
    assert r.status_code == 200 and client.cookies.get("crosscart_console") != old
    client.cookies.set("crosscart_console", old, path="/console")
    outage.begin()
    assert _refused_from_memory(client, token, "replaced")


def test_a_session_ended_by_the_keys_cap_is_not_taken_from_memory_while_the_database_is_down(
    client, session_factory, outage
):
    """A sign-in past the key's `CONSOLE_SESSIONS_PER_KEY` ends its oldest session in the database: that
    session's memory was kept, so a copy of its cookie passed AdminOnly through an outage after. Its hash
    is forgotten here and published on the revocation feed, as a signed-out session's is."""
    _, _, plaintext = _second_admin(session_factory)
    token = sign_in(client, plaintext)
    oldest = client.cookies.get("crosscart_console")
    assert client.get("/console/keys").status_code == 200  # confirmed by the database: in memory
    feed = _Feed(client)
    client.app.state.serving.revocations = feed
    for _ in range(CONSOLE_SESSIONS_PER_KEY):  # other browsers (`sign_in` clears the cookies)
        sign_in(client, plaintext)
    with transaction(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(ConsoleSessionRow)) == CONSOLE_SESSIONS_PER_KEY
    assert len(feed.published) == 1
    client.cookies.set("crosscart_console", oldest, path="/console")
    outage.begin()
    assert _refused_from_memory(client, token, "past the cap")


def test_a_sign_out_the_database_refused_still_leaves_memory(client, keys, outage):
    """Signing out while the database is down: the row stays until it is back, but the session is not
    served from memory meanwhile (forgotten whether or not the sign-out committed)."""
    token = sign_in(client, keys["admin"])
    assert client.get("/console/keys").status_code == 200
    cookie = client.cookies.get("crosscart_console")
    outage.begin()
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 503
    client.cookies.set("crosscart_console", cookie, path="/console")
    assert _refused_from_memory(client, token, "after a refused sign-out")


class _Feed:
    """Redis pub/sub between `replicas`, as `serving.revocations` delivers it: each replica's key cache
    discards what is published."""

    listening = True

    def __init__(self, *replicas) -> None:
        self.replicas, self.published = replicas, []

    async def publish(self, digest: str) -> bool:
        self.published.append(digest)
        for replica in self.replicas:
            replica.app.state.serving.principals.discard(digest)
        return True

    async def stop(self) -> None:
        pass


@pytest.mark.parametrize("ended", ["signed out", "key revoked", "signed out everywhere"])
def test_a_session_ended_on_one_replica_is_not_taken_from_the_others_memory(
    make_client, settings, keys, session_factory, outage, ended
):
    """Two replicas: a browser's session confirmed on b, then ended through a (sign-out, the key's
    revocation, the API's "sign out everywhere"); through an outage after, b refuses the cookie."""
    shared = settings.model_copy(update={"console_secret": "s" * 32})
    a, b = make_client(settings=shared), make_client(settings=shared)
    feed = _Feed(a, b)
    for replica in (a, b):
        replica.app.state.serving.revocations = feed
    key_id, _, plaintext = _second_admin(session_factory)
    token = sign_in(a, plaintext)
    b.cookies.set("crosscart_console", a.cookies.get("crosscart_console"), path="/console")
    assert b.get("/console/keys").status_code == 200  # b remembers the session
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    if ended == "signed out":
        assert a.post("/console/sign-out", data={"csrf_token": token}).status_code == 200
    elif ended == "key revoked":
        assert a.delete(f"/v1/api-keys/{key_id}", headers=admin).status_code == 200
    else:
        assert a.delete(f"/v1/api-keys/{key_id}/console-sessions", headers=admin).status_code == 200
    assert feed.published
    outage.begin()
    assert _refused_from_memory(b, token, ended)


def test_a_form_kept_without_its_page_escapes_what_was_typed(client, keys, outage):
    """The typed values go back into the page as text: a reason closing the textarea and opening a
    script is shown as typed (lines kept), not run, and sent again unchanged."""
    token = sign_in(client, keys["admin"])
    reason = 'Licence "A&B" </textarea><script>alert(1)</script>\nsecond line'
    outage.begin_at(catalog, "review")
    action = "/console/merchants/m3/review"
    r = client.post(action, data={"csrf_token": token, "decision": "reject", "reason": reason})
    assert r.status_code == 503, r.text
    assert "<script>alert(1)" not in r.text and "&lt;/textarea&gt;&lt;script&gt;alert(1)" in r.text
    assert form_values(r.text, action)["reason"] == [reason]


def test_a_form_sent_as_postgresql_goes_away_comes_back_filled_in(database_url, tmp_path, monkeypatch):
    """No simulation of the error: the API reaches PostgreSQL through a TCP proxy, cut as the new key's
    form is sent (after the session was read): the key's INSERT, then the keys list drawn again, meet
    a lost connection and a refused one. The form comes back filled in, and nothing was saved; so does
    the form sent again while the proxy stays cut (the session read from memory)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the outage is a cut TCP connection to PostgreSQL")
    factory = seeded_factory(database_url)
    keys = make_keys(factory)
    proxy, engine = proxied_engine(database_url, free_port(range(18150, 18200)), statement_timeout=5)
    form = FORMS["new API key"]
    create = keys_api.create_key

    def cut_then_create(*args, **kwargs):
        proxy.cut()
        return create(*args, **kwargs)

    try:
        with TestClient(fault_app(fault_settings(tmp_path), make_session_factory(engine))) as client:
            token = sign_in(client, keys["admin"])
            monkeypatch.setattr(keys_api, "create_key", cut_then_create)
            r = client.post(form.action, data={"csrf_token": token, **form.typed}, follow_redirects=False)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            assert "Nothing was saved: the database is unavailable; retry shortly." in r.text
            sent = form_values(r.text, form.action)
            assert {k: sent.get(k) for k in form.typed} == {k: [v] for k, v in form.typed.items()}
            assert not client.app.state.serving.db_health.up
            # still down as the form is sent again: the session is taken from memory, the form kept
            again = client.post(form.action, data=sent, follow_redirects=False)
            assert again.status_code == 503 and again.headers["retry-after"] == "5", again.text
            assert form_values(again.text, form.action) == sent
        with transaction(factory) as s:
            assert not form.stored(s)
    finally:
        engine.dispose()
        proxy.close()
        factory.kw["bind"].dispose()


def test_every_console_form_route_keeps_its_form_through_an_outage():
    """Every console POST but signing in and out is a `FormRoute`: a router made without its route class
    would lose its forms' input to the error page again."""
    posts = [r for m in CONSOLE_MODULES for r in m.router.routes if "POST" in r.methods]
    others = {r.path for r in posts if not isinstance(r, FormRoute)}
    assert len(posts) > 20 and others == {"/sign-in", "/sign-out"}


def test_a_plan_whose_campaign_changed_while_it_was_computed_answers_409_the_form_kept(
    client, keys, session_factory, monkeypatch
):
    """Another marketer's budget set while this plan computed (outside any transaction): the plan was
    for the old budget and was stored. Now the API's 409 `campaign_changed`, shown as the form's other
    refusals are (htmx: the fragment; else the page with the typed budget), no audience stored."""
    from commerce.services.campaign_overview import set_draft_budget
    from commerce.shoppers import Shopper
    from marketing import planning

    token = sign_in(client, keys["marketer"])
    _draft(client, token)
    with transaction(session_factory) as s:
        campaign_id = _draft_id(s)
        coupon = s.scalars(select(Coupon.coupon_id).where(Coupon.campaign_id == campaign_id)).one()
        shoppers = s.scalars(select(Shopper.shopper_id).order_by(Shopper.shopper_id).limit(20)).all()
    table = pd.DataFrame(
        {"shopper_id": shoppers, "coupon_id": coupon, "p_control": 0.1, "p_treated": 0.4,
         "spend_control": 30.0, "spend_treated": 120.0}
    )  # fmt: skip
    plan_and_store = marketing.plan_and_store  # the served model's effects, here a table's
    monkeypatch.setattr(marketing, "_served_effect_model", lambda state: None)
    monkeypatch.setattr(
        marketing, "plan_and_store", lambda f, cid, *, model, candidates, **kw: plan_and_store(
            f, cid, candidates=table, **kw
        ),
    )  # fmt: skip
    optimise = planning.planner.plan_campaign

    def budget_set_meanwhile(*args, **kwargs):
        with transaction(session_factory) as s:
            set_draft_budget(s, campaign_id, "40")
        return optimise(*args, **kwargs)

    monkeypatch.setattr(planning.planner, "plan_campaign", budget_set_meanwhile)
    path = f"/console/campaigns/{campaign_id}/plan"
    form = {"csrf_token": token, "budget": "300"}
    fragment = client.post(path, data=form, headers={"HX-Request": "true"})
    assert fragment.status_code == 409, fragment.text
    assert fragment.text.lstrip().startswith('<div id="plan-result"')
    assert "changed while it was planned" in fragment.text and "plan again" in fragment.text
    page = client.post(path, data=form)
    assert page.status_code == 409 and "plan again" in page.text
    assert form_values(page.text, path)["budget"] == ["300"]
    with transaction(session_factory) as s:
        members = select(func.count()).where(CampaignMember.campaign_id == campaign_id)
        assert s.scalar(members) == 0


class Controls(HTMLParser):
    """A page's form controls as (tag, type, name, value, checked) by id, and each label's text by the
    id it is for."""

    def __init__(self) -> None:
        super().__init__()
        self.controls, self.labels, self.hidden, self.label = {}, {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "label":
            self.label = a.get("for")
            self.labels[self.label] = ""
        elif tag in ("input", "textarea", "select") and a.get("type") == "hidden":
            self.hidden.append((a["name"], a["value"]))
        elif tag in ("input", "textarea", "select"):
            self.controls[a["id"]] = (tag, a.get("type"), a["name"], a.get("value"), "checked" in a)

    def handle_endtag(self, tag):
        if tag == "label":
            self.labels[self.label] = " ".join(self.labels[self.label].split())
            self.label = None

    def handle_data(self, data):
        if self.label:
            self.labels[self.label] += data


def controls(page: str) -> Controls:
    parser = Controls()
    parser.feed(page)
    return parser


def test_a_kept_form_draws_each_field_as_the_console_does_labelled(client, keys, outage):
    """Kept without its page, a coupon edit's checkbox is a checked checkbox under its own label ("on" was a
    text box reading "on", labelled "Requires grant"), and every control has a label naming it."""
    token = sign_in(client, keys["marketer"])
    form = FORMS["edit coupon"]
    typed = {**form.typed, "requires_grant": "on"}
    outage.begin_at(*form.calls)
    r = client.post(form.action, data={"csrf_token": token, **typed})
    assert r.status_code == 503, r.text
    page = controls(r.text)
    by_name = {c[2]: (i, c) for i, c in page.controls.items()}
    box_id, box = by_name["requires_grant"]
    assert box[:2] == ("input", "checkbox") and box[4]
    assert page.labels[box_id] == "Only for shoppers granted it"
    assert page.labels[by_name["min_spend"][0]] == "Minimum spend (CNY)"
    assert set(page.controls) <= set(page.labels)  # every control labelled, by `for`
    assert '<h2 id="kept-heading">' in r.text and 'aria-labelledby="kept-heading"' in r.text
    assert form_values(r.text, form.action) == {
        "csrf_token": [token],
        **{k: [v] for k, v in typed.items()},
    }


def test_a_kept_form_keeps_hidden_fields_hidden_and_long_text_a_textarea(client, keys, outage):
    """The rejection's decision (a hidden field) stays hidden, not a text box to edit; a reason with a
    line break is a textarea under the form's label, "Reason to reject"."""
    token = sign_in(client, keys["admin"])
    action = "/console/merchants/m3/review"
    outage.begin_at(catalog, "review")
    r = client.post(action, data={"csrf_token": token, "decision": "reject", "reason": "one\ntwo"})
    assert r.status_code == 503, r.text
    page = controls(r.text)
    assert ("decision", "reject") in page.hidden
    assert [c[2] for c in page.controls.values()] == ["reason"]
    ((reason_id, reason),) = page.controls.items()
    assert reason[0] == "textarea" and page.labels[reason_id] == "Reason to reject"
    assert form_values(r.text, action)["reason"] == ["one\ntwo"]


def test_a_kept_form_sends_repeated_and_unusual_values_back_exactly(client, keys, session_factory, outage):
    """Products picked together (a name sent twice) come back as one checked checkbox each, and values in
    Chinese, with quotes, or closing the tag and opening a script are escaped, shown as typed and sent
    again unchanged; the form sent again once the database is back is saved."""
    token = sign_in(client, keys["merchant"])
    form = FORMS["new keyword campaign"]
    name = '活动 "A&B" "><script>alert(1)</script>'
    typed = {**form.typed, "name": name, "keyword_0": "护手霜 <b>"}
    outage.begin_at(*form.calls)
    r = client.post(form.action, data={"csrf_token": token, **typed})
    assert r.status_code == 503, r.text
    assert "<script>alert(1)" not in r.text and "<b>" not in r.text
    boxes = [c for c in controls(r.text).controls.values() if c[2] == "product_ids"]
    assert boxes == [("input", "checkbox", "product_ids", p, True) for p in ("p01", "p02")]
    sent = form_values(r.text, form.action)
    assert sent == {"csrf_token": [token], **{k: v if isinstance(v, list) else [v] for k, v in typed.items()}}
    outage.end()
    assert client.post(form.action, data=sent, follow_redirects=False).status_code == 303
    with transaction(session_factory) as s:
        kc = s.scalars(select(KeywordCampaign).where(KeywordCampaign.name == name)).one()
        promoted = select(KeywordCampaignProduct.product_id).where(
            KeywordCampaignProduct.campaign_id == kc.campaign_id
        )
        assert sorted(s.scalars(promoted)) == ["p01", "p02"]


def test_a_kept_form_names_a_lone_picked_product_by_its_value(client, keys, outage):
    """One product picked is still a checkbox with its value beside it: labelled "Product ids" alone, the
    page did not say which product it sends."""
    token = sign_in(client, keys["merchant"])
    form = FORMS["new keyword campaign"]
    outage.begin_at(*form.calls)
    r = client.post(form.action, data={"csrf_token": token, **form.typed, "product_ids": "p02"})
    assert r.status_code == 503, r.text
    page = controls(r.text)
    ((box_id, box),) = [(i, c) for i, c in page.controls.items() if c[2] == "product_ids"]
    assert box == ("input", "checkbox", "product_ids", "p02", True) and page.labels[box_id] == "p02"
    assert "<legend>Product ids</legend>" in r.text


class Selects(HTMLParser):
    """Each select of a page: its name to its options, (value, label, selected)."""

    def __init__(self) -> None:
        super().__init__()
        self.selects: dict[str, list[list]] = {}
        self.select = self.option = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "select":
            self.select = self.selects.setdefault(a["name"], [])
        elif tag == "option" and self.select is not None:
            self.option = [a.get("value"), "", "selected" in a]
            self.select.append(self.option)

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "option":
            self.option = None

    def handle_data(self, data):
        if self.option is not None:
            self.option[1] += data


def selects(page: str) -> dict[str, list[tuple[str, str, bool]]]:
    parser = Selects()
    parser.feed(page)
    return {name: [tuple(o) for o in options] for name, options in parser.selects.items()}


@pytest.mark.parametrize(
    ("name", "picked"),
    [
        ("new keyword campaign", {"match_0": "phrase", "match_1": "exact"}),
        ("new keyword", {"match_type": "exact"}),
        ("new API key", {"role": "merchant"}),
    ],
)
def test_a_kept_form_draws_a_select_of_fixed_choices_as_a_select_the_typed_one_selected(
    client, keys, session_factory, outage, name, picked
):
    """A dropdown whose options are a fixed list (match types, roles: no database read) comes back as
    that dropdown, every option offered and the one sent selected, under the form's label; it was a
    text box holding the option's value. One whose options are read from the database (the shop's
    shipping partners) stays a text box holding what was sent."""
    form = FORMS[name]
    token, action = _opened(form, client, keys, session_factory)
    outage.begin_at(*form.calls)
    r = client.post(action, data={"csrf_token": token, **form.typed}, follow_redirects=False)
    assert r.status_code == 503, r.text
    drawn = selects(r.text)
    assert set(drawn) == set(picked)
    choices = {"match": keyword_ads.MATCH_TYPES, "role": tuple((r, r) for r in admin.ROLES)}
    for field_name, value in picked.items():
        offered = choices["role" if field_name == "role" else "match"]
        assert drawn[field_name] == [(v, label, v == value) for v, label in offered]
    page = controls(r.text)
    by_name = {c[2]: i for i, c in page.controls.items()}
    assert set(page.controls) <= set(page.labels)
    if name == "new API key":
        assert page.labels[by_name["role"]] == "Role"
    sent = form_values(r.text, action)
    assert {k: sent[k] for k in picked} == {k: [v] for k, v in picked.items()}


def test_a_kept_select_whose_options_need_the_database_or_that_was_sent_another_value_is_a_text_box(
    client, keys, session_factory, outage
):
    """The shop's shipping partners are read from the database: the kept form cannot offer them, and
    keeps a text box. A match type the form does not offer (sent by hand) is a text box too: a select
    would send one it offers instead."""
    token = sign_in(client, keys["merchant"])
    outage.begin_at(logistics, "set_shipping_rule")
    action = "/console/shop/shipping-rule"
    r = client.post(action, data={"csrf_token": token, "partner_id": "sf-express", "max_days": ""})
    assert r.status_code == 503, r.text
    assert selects(r.text) == {}
    assert form_values(r.text, action)["partner_id"] == ["sf-express"]

    outage.end()
    form = FORMS["new keyword"]
    token, action = _opened(form, client, keys, session_factory)
    assert client.get("/console").status_code == 200  # the session, confirmed by the database
    outage.begin()  # down before the form is read (its match type would be refused first)
    r = client.post(action, data={"csrf_token": token, **form.typed, "match_type": "fuzzy"})
    assert r.status_code == 503, r.text
    assert selects(r.text) == {}  # not offered: sent again as it was sent
    assert form_values(r.text, action)["match_type"] == ["fuzzy"]
