"""The console in real Chromium (selenium + chromium-driver) against the app under uvicorn on the tiny demo.

Every page visited is screenshotted to var/test-artifacts/console/ and checked with axe-core (vendored
from its npm package): no serious or critical violation. Sign-in and the campaign flow are driven by
keyboard (Tab / Enter) to show they work without a mouse.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import sqlite3
import threading
import time
import urllib.parse
import urllib.request
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from commerce.ads import KeywordCampaign, KeywordCampaignProduct
from commerce.db import transaction
from tests.conftest import free_port
from tests.console.conftest import PORTS, STEP_SECONDS

# A real browser on a loaded 2-core machine sometimes reads a page while it is being replaced; a test
# that fails that way runs again (up to twice) before it counts as failed. Logic errors fail every run.
EXPERIMENT_ATTEMPTS = itertools.count(1)
# One xdist worker runs this module whole (`--dist loadfile`): the demo, the server and Chromium are
# session fixtures, built once. The 300 s limit times each test's own steps (16-36 s on a loaded host):
# the session's setup (the tiny demo, 166-207 s of wall time at load 15-24 on 2 cores) fell on
# whichever test ran first and took it near the limit; the setup keeps its own bounds (the demo's
# subprocess timeout, the server's start deadline, Chromium's page-load timeout).
pytestmark = [
    pytest.mark.usefixtures("needs_browser"),
    pytest.mark.flaky(reruns=2, reruns_delay=1),
    pytest.mark.timeout(300, func_only=True),
]


class Console:
    """The browser plus the checks every page gets."""

    def __init__(self, driver, base: str, artifacts: Path, failures: Path) -> None:
        self.driver, self.base, self.artifacts, self.failures = driver, base, artifacts, failures
        self.checked: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def text(self) -> str:
        """The page's text; read again if the page is replaced while reading (a load or an htmx swap)."""
        return self.wait(lambda d: d.find_element("tag name", "body").text or " ")

    def heading(self) -> str:
        return self.wait(lambda d: d.find_element("tag name", "h1").text or " ")

    def by_id(self, element_id: str):
        return self.driver.find_element("id", element_id)

    def check(self, name: str) -> None:
        """No Content-Security-Policy violation so far on this page (its scripts, styles and htmx swaps:
        conftest's CSP_RECORDER), a screenshot, then axe-core: no serious or critical accessibility
        violation."""
        blocked = self.driver.execute_script("return window.__cspViolations;")
        assert blocked == [], f"{name}: the console's CSP blocked {blocked}"
        # the whole page in one DevTools call: resizing the window to the page's height and back cost two
        # relayouts and three more round trips per page
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True})
        (self.artifacts / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
        violations = self.driver.execute_async_script(  # axe is on every page from its start (conftest)
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations));"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in violations
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{name}: {bad}"
        self.checked.append(name)

    def keys(self, *keys) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()

    def tab_to(self, predicate: str, limit: int = 80) -> None:
        """Press Tab until the focused element matches the JS `predicate` (on `el`), then Enter."""
        from selenium.webdriver.common.keys import Keys

        for _ in range(limit):
            self.keys(Keys.TAB)
            if self.driver.execute_script(f"const el = document.activeElement; return !!({predicate});"):
                self.keys(Keys.ENTER)
                return
        raise AssertionError(f"Tab never reached an element with {predicate}")

    def sign_in(self, key: str) -> None:
        """By keyboard: the key field takes focus on load; type, Enter."""
        from selenium.webdriver.common.keys import Keys

        self.driver.delete_all_cookies()
        self.open("/console/sign-in")
        # autofocus applies at a rendering update, which on a loaded machine can come after the load
        self.wait(lambda d: d.switch_to.active_element.get_attribute("id") == "api_key")
        self.keys(key, Keys.ENTER)
        self.wait(lambda d: "Signed in as" in d.find_element("tag name", "body").text)

    def sign_out(self) -> None:
        self.driver.find_element("xpath", "//button[text()='Sign out']").click()
        self.wait(lambda d: d.current_url.endswith("/console/sign-in"))

    def wait(self, condition, timeout: float = STEP_SECONDS):
        """Until `condition(driver)` holds; elements replaced meanwhile (page loads, htmx swaps) retry."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        # NoSuchElement, StaleElement and "node does not belong to the document" while a page loads or
        # htmx swaps are all WebDriverExceptions; a condition that never holds still ends in a timeout.
        ignored = (WebDriverException,)
        return WebDriverWait(self.driver, timeout, ignored_exceptions=ignored).until(condition)

    def arrive(self, address: str) -> None:
        """Until the browser shows a page whose URL contains `address`, loaded: a click's navigation
        changes the URL when it commits, before the new page's elements are all there to read."""
        self.wait(
            lambda d: (
                address in d.current_url and d.execute_script("return document.readyState;") == "complete"
            )
        )

    def submit(self, button_id: str, confirm: bool | None = None) -> None:
        """Click a form's button; return once the page that answers it has replaced this one. A button
        that asks first (data-confirm, static/console.js) is confirmed (`confirm=True`) or cancelled
        (`False`: no page follows, the page stays).

        Chromedriver does not always hold the next command until a click's navigation ends: a check that
        already held on the old page (another version's "Make champion" button) passed at once, and what
        followed read a page being replaced (the first attempt's flake in CI)."""
        from selenium.webdriver.support.expected_conditions import staleness_of

        old = self.driver.find_element("tag name", "html")
        self.by_id(button_id).click()
        if confirm is not None:
            from selenium.webdriver.support.expected_conditions import alert_is_present

            dialog = self.wait(alert_is_present())
            if not confirm:
                dialog.dismiss()
                return
            dialog.accept()
        self.wait(staleness_of(old))
        self.wait(lambda d: d.execute_script("return document.readyState;") == "complete")

    def fill(self, **fields) -> None:
        for name, value in fields.items():
            el = self.driver.find_element("name", name)
            if el.tag_name == "select":
                from selenium.webdriver.support.ui import Select

                Select(el).select_by_value(value)
            elif el.get_attribute("type") == "datetime-local":
                self.driver.execute_script("arguments[0].value = arguments[1];", el, value)
            else:
                el.clear()
                el.send_keys(value)

    def figure(self, label: str) -> str:
        return self.driver.find_element("xpath", f"//dt[text()='{label}']/following-sibling::dd").text


@pytest.fixture(scope="module")
def console(driver, server, artifacts, failures) -> Console:
    return Console(driver, server, artifacts, failures)


FORBIDDEN = {
    "storefront": ["/console/campaigns", "/console/experiments", "/console/keys"],
    "shopper1": ["/console/campaigns", "/console/models", "/console/shop"],
    "merchant": ["/console/campaigns", "/console/merchants", "/console/models"],
    "marketer": ["/console/models", "/console/merchants", "/console/keys"],
    "data_scientist": ["/console/campaigns", "/console/coupons", "/console/keys", "/console/shop"],
    "admin": [],
}
NAV = {
    "storefront": [],
    "shopper1": [],
    "merchant": ["My shop", "Shipments", "Keyword ads"],
    "marketer": ["Campaigns", "Coupons", "Experiments"],
    "data_scientist": ["Experiments", "Models"],
    "admin": [
        "Campaigns",
        "Coupons",
        "Experiments",
        "Models",
        "Merchant review",
        "API keys",
        "My shop",
        "Shipments",
        "Keyword ads",
    ],
}


def test_each_role_signs_in_sees_only_its_pages_and_is_refused_the_rest(console, demo):
    console.driver.delete_all_cookies()  # signed out, also when a failed attempt stopped signed in
    console.open("/console/campaigns")
    assert console.driver.current_url.endswith("/console/sign-in?next=/console/campaigns")
    console.check("sign-in")
    for label, forbidden in FORBIDDEN.items():
        console.sign_in(demo["keys"][label])
        nav = [a.text for a in console.driver.find_elements("css selector", "header nav a")]
        assert nav == NAV[label]
        console.check(f"home-{label}")
        for path in forbidden:
            console.open(path)
            assert console.heading() == "Not allowed" and "may not use this page" in console.text(), path
        if forbidden:
            console.check(f"forbidden-{label}")
        console.sign_out()
    console.open("/console/sign-in")
    console.fill(api_key="cc_not-a-real-key")
    console.driver.find_element("xpath", "//button[text()='Sign in']").click()
    console.wait(lambda d: "Unknown or revoked API key" in d.page_source)


def test_marketer_creates_plans_launches_completes_and_reads_the_report(console, demo):
    from selenium.webdriver.common.keys import Keys

    console.sign_in(demo["keys"]["marketer"])
    console.tab_to("el.textContent === 'Campaigns'")  # keyboard: skip link, brand, then the nav
    console.wait(lambda d: d.find_element("tag name", "h1").text == "Campaigns")
    console.check("campaigns")
    console.tab_to("el.textContent === 'New campaign'")
    console.wait(lambda d: d.find_element("tag name", "h1").text == "New campaign")
    console.check("campaign-new")
    start = datetime.now(UTC) + timedelta(hours=1)
    console.fill(
        name="Browser spring", channel="email", budget="300", control_share="0.2",
        starts_at=start.strftime("%Y-%m-%dT%H:%M"),
        ends_at=(start + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M"),
        kind="amount_off", value="10", min_spend="0",
    )  # fmt: skip
    console.driver.find_element("name", "usage_limit").send_keys(Keys.ENTER)  # submit by keyboard
    console.arrive("/console/campaigns/cmp")
    assert console.by_id("campaign-status").text == "draft"
    console.check("campaign-draft")

    console.fill(region="Atlantis")  # htmx swaps the refusal (422) in: it was dropped, the page unchanged
    console.by_id("plan-button").click()
    console.wait(lambda d: "There are no shoppers in region 'Atlantis'" in d.page_source)
    console.check("campaign-plan-refused")
    console.fill(budget="275")  # the database busy: htmx swaps the 503's message in, the form keeps its input
    with closing(sqlite3.connect(demo["dir"] / "crosscart.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock past the busy timeout
        try:
            console.by_id("plan-button").click()
            console.wait(lambda d: "Nothing was saved: the database is busy" in d.page_source)
        finally:
            other.execute("ROLLBACK")
    assert console.driver.find_element("name", "budget").get_attribute("value") == "275"
    assert console.driver.find_element("name", "region").get_attribute("value") == "Atlantis"
    assert console.by_id("campaign-budget").text == "300.00"  # nothing was saved
    console.check("campaign-plan-busy")
    console.fill(region="", budget="250")
    console.tab_to("el.id === 'plan-button'")  # htmx swaps the plan in without a page load
    console.wait(lambda d: "Plan at budget 250.00" in d.page_source)  # no node handle across the swap
    treated = int(console.figure("Audience (with coupon)"))
    assert treated > 0
    assert console.driver.find_element("css selector", "svg#curve-profit polyline")
    chosen = f">chosen plan {console.figure('Expected cost').removesuffix(' CNY')}<"  # the plan, marked
    assert chosen in console.by_id("curve-profit").get_attribute("innerHTML")
    assert console.by_id("campaign-budget").text == "250.00"  # the header follows the plan
    assert "Doubly robust (DR)" in console.by_id("policy-value").text  # the forecast beside the history
    console.check("campaign-plan")

    slider = console.by_id("budget-range")  # the slider replans on change and moves the marker
    console.driver.execute_script(  # input events bubble, as a user's drag sends them
        "arguments[0].value = 200; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        slider,
    )
    assert console.by_id("budget").get_attribute("value") == "200"  # static/console.js, not an inline handler
    console.driver.execute_script("arguments[0].dispatchEvent(new Event('change'));", slider)
    console.wait(lambda d: "Plan at budget 200.00" in d.page_source)
    console.check("campaign-slider")
    chosen = f">chosen plan {console.figure('Expected cost').removesuffix(' CNY')}<"
    assert chosen in console.by_id("curve-profit").get_attribute("innerHTML")

    console.submit("schedule-button")
    console.wait(lambda d: d.find_element("id", "campaign-status").text == "scheduled")
    console.submit("launch-button", confirm=False)  # asks first: cancelled, nothing is granted
    assert console.by_id("campaign-status").text == "scheduled"
    console.submit("launch-button", confirm=True)
    console.wait(lambda d: d.find_element("id", "campaign-status").text == "running")
    assert int(console.by_id("grants").text) > 0
    console.check("campaign-running")
    console.submit("complete-button", confirm=True)
    console.wait(lambda d: d.find_element("id", "campaign-status").text == "completed")
    report = console.wait(lambda d: d.find_element("id", "report")).text  # loaded by htmx after the page
    assert "Incremental conversion rate" in report and "ROI" in report
    assert console.driver.find_element("css selector", "svg#report-chart")
    console.check("campaign-report")

    console.open("/console/campaigns?status=completed")
    assert "Browser spring" in console.text()
    console.open("/console/coupons")
    console.check("coupons")
    coupon = console.driver.find_element("xpath", "//td[contains(., 'Browser spring coupon')]/a")
    coupon.click()
    console.arrive("/console/coupons/c_")
    console.fill(min_spend="5")
    console.submit("save-coupon")  # granted at launch: the API's rule refuses the edit
    console.wait(lambda d: "granted or used" in d.page_source)
    console.check("coupon-edit-refused")

    console.open("/console/coupons/new")
    console.driver.execute_script(
        "document.querySelectorAll('main input[name=csrf_token]').forEach(e => e.remove());"
    )
    console.fill(kind="amount_off", value="5", coupon_id="no-csrf")
    console.submit("save-coupon")
    console.wait(lambda d: "CSRF" in d.page_source)
    assert console.heading() == "Not allowed"
    console.check("csrf-refused")
    console.sign_out()


def test_data_scientist_runs_an_experiment_and_compares_models_and_an_admin_promotes(console, demo):
    # a fresh name per attempt: a rerun after a failed attempt would otherwise be refused as a duplicate
    name = f"browser-exp-{next(EXPERIMENT_ATTEMPTS)}"
    console.sign_in(demo["keys"]["data_scientist"])
    console.open("/console/experiments/new")
    console.check("experiment-new")
    console.fill(name=name, description="challenger recommender", planned_units="200")
    console.driver.find_element("xpath", "//button[text()='Create draft']").click()
    console.arrive(f"/console/experiments/{name}")
    console.submit("start-experiment")
    console.wait(lambda d: d.find_element("id", "experiment-status").text == "running")
    assert "challenger" in console.text()
    console.check("experiment-running")
    console.open("/console/experiments")
    assert name in console.text()
    console.check("experiments")

    console.open("/console/models")
    page = console.text()
    assert "v1" in page and "v2" in page and "ndcg at 10" in page
    assert console.driver.find_elements("css selector", "button[id^=promote-]") == []  # promotion: admins
    assert console.driver.find_elements("css selector", "a[href*='/plots/']")  # plots from MLflow
    console.check("models-data-scientist")
    console.sign_out()

    console.sign_in(demo["keys"]["admin"])
    console.open("/console/models")  # the demo registers v1-v4; its champion is not v1
    if not console.driver.find_elements("id", "promote-recommender-1"):  # an earlier attempt rolled back
        console.submit("promote-recommender-2", confirm=True)
        assert console.by_id("aliases-recommender-2").text == "champion"
    console.submit("promote-recommender-1", confirm=True)  # roll the champion back to v1
    assert console.by_id("aliases-recommender-1").text == "champion"
    assert console.driver.find_elements("id", "promote-recommender-1") == []
    assert "champion" not in console.by_id("aliases-recommender-2").text
    console.check("models-admin")


def test_admin_approves_a_merchant_and_creates_a_key_shown_once(console, demo, server):
    body = json.dumps({"name": "Browser Shop", "country": "JP", "licence_no": "LIC-BROWSER", "brands": ["B"]})
    request = urllib.request.Request(
        f"{server}/v1/merchants", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=STEP_SECONDS) as r:
        merchant_id = json.loads(r.read())["merchant_id"]
    console.sign_in(demo["keys"]["admin"])
    console.open("/console/merchants")
    console.check("merchants")
    console.submit(f"approve-{merchant_id}")
    console.wait(lambda d: d.find_elements("id", f"status-{merchant_id}"))
    assert console.by_id(f"status-{merchant_id}").text == "approved"

    console.open("/console/keys")
    console.fill(role="data_scientist", name="browser ds")
    console.submit("create-key")
    new_key = console.wait(lambda d: d.find_element("id", "new-key")).text
    assert re.fullmatch(r"cc_[\w-]{30,}", new_key)
    console.check("keys-created")
    console.open("/console/keys")
    assert new_key not in console.driver.page_source  # shown once
    console.sign_out()

    console.sign_in(new_key)  # the new key works at once
    assert [a.text for a in console.driver.find_elements("css selector", "header nav a")] == NAV[
        "data_scientist"
    ]
    console.sign_out()

    console.sign_in(demo["keys"]["admin"])  # revoking asks first
    console.open("/console/keys")
    live = "(//tr[td[text()='browser ds'] and .//button[starts-with(@id, 'revoke-')]])[last()]/td[1]"
    key_id = console.driver.find_element("xpath", live).text
    console.submit(f"revoke-{key_id}", confirm=False)
    assert console.by_id(f"revoke-{key_id}")  # cancelled: still a live key
    console.submit(f"revoke-{key_id}", confirm=True)
    assert console.driver.find_elements("id", f"revoke-{key_id}") == []
    console.sign_out()
    console.open("/console/sign-in")
    console.fill(api_key=new_key)
    console.driver.find_element("xpath", "//button[text()='Sign in']").click()
    console.wait(lambda d: "Unknown or revoked API key" in d.page_source)


def _shipped_order(server: str, demo: dict) -> tuple[int, str]:
    """An order of the merchant's sample product, paid, cleared, shipped and scanned once, through the API
    (the shopper's key, then the back office's admin key): (order id, tracking number)."""
    shopper, admin = demo["keys"]["shopper1"], demo["keys"]["admin"]
    body = {"lines": [{"product_id": demo["samples"]["product"], "quantity": 1}]}
    order_id = _api(server, f"/v1/shoppers/{demo['samples']['shoppers'][0]}/orders", shopper, body)[
        "order_id"
    ]
    tracking_no = f"SF-BROWSER-{order_id}"
    _api(server, f"/v1/orders/{order_id}/payment", admin, {"payment_ref": tracking_no})
    _api(server, f"/v1/orders/{order_id}/status", admin, {"status": "customs_cleared"})
    _api(server, f"/v1/orders/{order_id}/shipment", admin, {"tracking_no": tracking_no, "location": "Ningbo"})
    _api(
        server,
        f"/v1/orders/{order_id}/tracking",
        admin,
        {"status": "arrived_at_hub", "location": "杭州转运中心"},
    )
    return order_id, tracking_no


def test_merchant_sees_its_products_stock_orders_and_a_shipped_orders_tracking(console, demo, server):
    order_id, tracking_no = _shipped_order(server, demo)
    console.sign_in(demo["keys"]["merchant"])
    console.open("/console/shop")
    assert demo["samples"]["product"] in console.text()
    assert "Orders to ship" in console.text()
    console.check("shop")
    console.tab_to("el.textContent === 'Shipments'")  # keyboard, from the navigation
    console.wait(lambda d: d.find_element("tag name", "h1").text == "Shipments")
    assert tracking_no in console.by_id("shipments").text
    assert "arrived at hub, 杭州转运中心" in console.by_id("shipments").text
    console.check("shipments")
    console.tab_to(f"el.textContent === 'Order {order_id}'")
    console.wait(lambda d: d.find_element("tag name", "h1").text == f"Order {order_id}")
    assert (
        console.by_id("tracking-no").text == tracking_no and console.by_id("order-status").text == "shipped"
    )
    steps = [li.text for li in console.driver.find_elements("css selector", "#tracking li")]
    assert [s.split(" · ")[1] for s in steps[-4:]] == [
        "order customs cleared", "order shipped", "carrier scan: shipped", "carrier scan: arrived at hub",
    ], steps  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\d( to \d{4}-\d\d-\d\d)?", console.by_id("expected-delivery").text)
    console.check("order-tracking")
    console.sign_out()


def _api(server: str, path: str, key: str, body: dict | None = None, method: str | None = None):
    request = urllib.request.Request(
        server + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=STEP_SECONDS) as r:
        return json.loads(r.read())


def test_merchant_runs_a_keyword_campaign_and_reads_its_report(console, demo, server):
    key, merchant = demo["keys"]["merchant"], demo["samples"]["merchant"]
    listed = _api(server, f"/v1/merchants/{merchant}/keyword-campaigns?limit=100", key)["items"]
    for old in listed:  # a rerun starts afresh
        if old["status"] != "ended":
            _api(server, f"/v1/keyword-campaigns/{old['campaign_id']}", key, {"status": "ended"}, "PATCH")
    console.sign_in(key)
    console.tab_to("el.textContent === 'Keyword ads'")
    console.wait(lambda d: d.find_element("tag name", "h1").text == "Keyword ads")
    console.check("keyword-campaigns")
    console.submit("new-keyword-campaign")
    console.wait(lambda d: d.find_element("tag name", "h1").text == "New keyword campaign")
    console.check("keyword-campaign-new")
    box = console.driver.find_element("css selector", "input[name=product_ids]")
    product_id = box.get_attribute("value")
    title = _api(server, f"/v1/products/{product_id}", demo["keys"]["storefront"])["title"]
    keyword = title.split()[0]
    box.click()
    console.fill(
        name="Browser keyword week", daily_budget="20", keyword_0=keyword, match_0="broad", bid_0="1.50"
    )
    console.submit("create-keyword-campaign")
    console.arrive("/console/keyword-campaigns/kc_")
    assert console.by_id("campaign-status").text == "active"
    cid = console.driver.current_url.rsplit("/", 1)[1]

    # the campaign serves: the product is sponsored for a search of its title, and a click is charged
    found = _api(server, f"/v1/search?q={urllib.parse.quote(title)}", demo["keys"]["storefront"])
    ads = [a for a in found["sponsored"] if a["product_id"] == product_id]
    assert ads and ads[0]["label"] == "Sponsored", found["sponsored"]
    click = _api(
        server, "/v1/search/clicks", demo["keys"]["storefront"], {"token": ads[0]["impression_token"]}
    )
    assert click["charged"] and click["campaign_id"] == cid

    def reported(d) -> bool:  # impressions are written within a second, off the request path
        d.refresh()
        return d.find_element("id", "report-impressions").text == "1"

    console.wait(reported)
    assert console.by_id("report-clicks").text == "1" and console.by_id("report-ctr").text == "100.00%"
    assert console.by_id("report-spend").text == console.by_id("spent-today").text != "0.00"
    console.check("keyword-campaign-report")

    console.submit("pause-campaign")
    console.wait(lambda d: d.find_element("id", "campaign-status").text == "paused")
    paused = _api(server, f"/v1/search?q={urllib.parse.quote(title)}", demo["keys"]["storefront"])
    assert product_id not in [a["product_id"] for a in paused["sponsored"]]  # out of the auction at once
    console.submit("resume-campaign")
    console.wait(lambda d: d.find_element("id", "campaign-status").text == "active")
    console.fill(keyword=keyword, match_type="broad")  # the same keyword again: refused
    console.by_id("new-bid").send_keys("2.00")
    console.submit("add-keyword")
    console.wait(lambda d: "already in the campaign" in d.page_source)
    console.check("keyword-duplicate-refused")
    console.sign_out()


PHONE_PAGES = ("/console/campaigns", "/console/coupons", "/console/experiments", "/console/models",
               "/console/merchants", "/console/keys")  # fmt: skip


def test_every_list_fits_a_phone_screen(console, demo):
    """At 375 CSS pixels (a phone) a wide table scrolls sideways in its own box, focusable for keyboard
    scrolling (static/console.js); the tables widened the whole page to up to 1190 pixels, header and all."""
    console.sign_in(demo["keys"]["admin"])
    phone = {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True}
    console.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
    try:
        merchant = demo["samples"]["merchant"]
        for path in (
            *PHONE_PAGES,
            f"/console/shop?merchant={merchant}",
            f"/console/shop/orders?merchant={merchant}",
        ):
            console.open(path)
            console.wait(lambda d: d.execute_script("return document.readyState;") == "complete")
            page, screen = console.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth];"
            )
            assert page <= screen == 375, f"{path}: the page is {page} px wide on a {screen} px screen"
            console.check("phone-" + path.split("?")[0].strip("/").replace("/", "-"))
    finally:
        console.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    console.sign_out()


def test_every_list_fits_a_1280_pixel_window(console, demo):
    """At 1280 CSS pixels (a laptop), where tables do not scroll in their own box, no page is wider than
    the window: the admin's Models table (metric names as one unbreakable word each, "precision_at_10",
    and the promote column) made the page 1286 pixels wide, scrolling sideways."""
    console.sign_in(demo["keys"]["admin"])
    laptop = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    console.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", laptop)
    try:
        for path in PHONE_PAGES:
            console.open(path)
            console.wait(lambda d: d.execute_script("return document.readyState;") == "complete")
            page, screen = console.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth];"
            )
            assert page <= screen == 1280, f"{path}: the page is {page} px wide in a {screen} px window"
    finally:
        console.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    console.sign_out()


@contextmanager
def serving(app):
    """`app` (a test client's, its lifespan started) under uvicorn in this process, so a test can take its
    database away (`Outage`) while a browser uses it: its address."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(PORTS), lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STEP_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(STEP_SECONDS)


def test_a_form_kept_through_an_outage_is_accessible_and_sent_again(
    driver, artifacts, failures, client, keys, session_factory, monkeypatch
):
    """A new keyword campaign sent as the database goes down comes back alone (its page reads the
    merchant's products): the products picked are checked checkboxes, a match type a dropdown with the
    one picked selected, a name in Chinese with a script in it is shown as typed, axe finds no serious
    or critical violation, and "Send again", clicked once the database is back, creates the campaign as
    typed."""
    from serving.routers import search
    from tests.console.test_form_failures import Outage

    name = '护手霜活动 "><script>alert(1)</script>'
    outage = Outage(session_factory.kw["bind"], monkeypatch)
    try:
        with serving(client.app) as base:
            console = Console(driver, base, artifacts, failures)
            console.sign_in(keys["merchant"])
            console.open("/console/keyword-campaigns/new")
            console.fill(
                name=name, daily_budget="8.50", keyword_0="hand cream", match_0="phrase", bid_0="0.45"
            )
            for product in ("p01", "p02"):
                console.by_id(f"product-{product}").click()
            outage.begin_at(search, "create_keyword_campaign")
            console.submit("create-keyword-campaign")
            assert console.heading() == "Your form, as you sent it"
            assert "Nothing was saved: the database is unavailable" in console.text()
            boxes = console.driver.find_elements("css selector", "input[name=product_ids]")
            assert [(b.get_attribute("value"), b.is_selected()) for b in boxes] == [
                ("p01", True),
                ("p02", True),
            ]
            assert console.driver.find_element("name", "name").get_attribute("value") == name
            match = console.driver.find_element("name", "match_0")  # a dropdown again, as typed
            assert (match.tag_name, match.get_attribute("value")) == ("select", "phrase")
            console.check("form-kept")

            outage.end()
            console.submit("send-again")
            console.arrive("/console/keyword-campaigns/")
            assert name in console.text()
            console.sign_out()
    finally:
        outage.close()
    with transaction(session_factory) as s:
        campaign = s.scalars(select(KeywordCampaign).where(KeywordCampaign.name == name)).one()
        promoted = select(KeywordCampaignProduct.product_id).where(
            KeywordCampaignProduct.campaign_id == campaign.campaign_id
        )
        assert sorted(s.scalars(promoted)) == ["p01", "p02"] and campaign.daily_budget == Decimal("8.50")
