"""The marketer's campaign flow in the console over HTTP (runs without a browser): create with a coupon,
plan through the API's plan endpoint with the budget set from the form, curve and figures, schedule,
launch, progress, complete, report; the draft-only budget rule."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from commerce.db import transaction
from commerce.errors import InvalidState
from commerce.services import campaign_overview
from commerce.services import campaigns as cmp
from commerce.services.coupons import CouponInput, create_coupon
from features.campaign_features import NUMERIC_FEATURES
from models.uplift.base import CouponUpliftModel
from serving.console.charts import PAD_L, PAD_R, WIDTH, line_chart, thin
from tests.marketing.history import store_randomized_campaign
from tests.serving.conftest import ScriptedSource, auth
from tests.serving.test_campaign_plan import START, campaign, effect_model  # noqa: F401  (fixtures)
from tests.serving.test_console import sign_in


def test_marketer_plans_launches_completes_and_reads_the_report(make_client, keys, campaign, effect_model):  # noqa: F811
    served = ScriptedSource(versions={"1": effect_model}, alias="1")
    client = make_client(uplift_source=served)
    token = sign_in(client, keys["marketer"])
    page = client.get(f"/console/campaigns/{campaign}")
    assert page.status_code == 200 and 'id="budget-range"' in page.text and "A10" in page.text
    # a plan takes seconds on the demo data: the form and the slider show "Planning" while it runs
    assert page.text.count('hx-indicator="#planning"') == 2 and 'id="planning"' in page.text

    refused = client.post(f"/console/campaigns/{campaign}/plan", data={"budget": "80"})
    assert refused.status_code == 403  # no CSRF token
    planned = client.post(
        f"/console/campaigns/{campaign}/plan",
        data={"csrf_token": token, "budget": "80", "region": "Shanghai", "margin_rate": "0.5"},
        headers={"HX-Request": "true"},
    )
    assert planned.status_code == 200, planned.text
    assert planned.text.startswith('<div id="plan-result"')  # the htmx fragment only
    assert "Plan at budget 80.00" in planned.text and 'id="curve-profit"' in planned.text
    cost = re.search(r"Expected cost</dt><dd>([\d,]+) CNY", planned.text)[1]  # the plan's, marked
    assert planned.text.count(f">chosen plan {cost}<") == 2 and 'id="schedule-button"' in planned.text
    assert "No estimate from past randomised campaigns: no completed campaign" in planned.text
    treated = int(re.search(r"Audience \(with coupon\)</dt><dd>(\d+)", planned.text)[1])
    assert treated >= 4
    with transaction(client.app.state.serving.session_factory) as s:
        assert campaign_overview.progress(s, campaign).budget == 80
        assert campaign_overview.top_segments(s, campaign)[0]["treated"] > 0

    for action, status in (("schedule", "scheduled"), ("launch", "running")):
        r = client.post(f"/console/campaigns/{campaign}/{action}", data={"csrf_token": token})
        assert r.status_code == 200 and f'id="campaign-status">{status}<' in r.text
    assert int(re.search(r'id="grants">(\d+)<', r.text)[1]) == treated
    late = client.post(f"/console/campaigns/{campaign}/plan", data={"csrf_token": token, "budget": "500"})
    assert late.status_code == 409 and "only a draft" in late.text  # the API's status
    listed = client.get("/console/campaigns?status=running")
    assert "Spring" in listed.text and "80.00" in listed.text
    done = client.post(f"/console/campaigns/{campaign}/complete", data={"csrf_token": token})
    assert 'id="campaign-status">completed<' in done.text
    assert f'hx-get="/console/campaigns/{campaign}/report"' in done.text  # measured after the page
    report = client.get(f"/console/campaigns/{campaign}/report", headers={"HX-Request": "true"})
    assert 'id="report"' in report.text and 'id="report-chart"' in report.text
    assert "<html" not in report.text  # the fragment; without htmx the same report is a page
    assert "<html" in client.get(f"/console/campaigns/{campaign}/report").text
    csv = client.get(f"/console/campaigns/{campaign}/audience.csv")
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) - 1 >= treated
    api = client.get(f"/v1/campaigns/{campaign}", headers=auth(keys["marketer"])).json()
    assert api["status"] == "completed" and api["budget"] == "80.00"


def test_draft_budget_changes_only_while_draft(session_factory, campaign):  # noqa: F811
    with transaction(session_factory) as s:
        assert campaign_overview.set_draft_budget(s, campaign, "75").budget == 75
    with transaction(session_factory) as s:
        from commerce.services.campaigns import schedule_campaign, set_audience

        set_audience(s, campaign, [("sh00", "A10"), ("sh02", "control")])
        schedule_campaign(s, campaign)
    with transaction(session_factory) as s, pytest.raises(InvalidState):
        campaign_overview.set_draft_budget(s, campaign, "90")


def test_charts_thin_long_curves_and_escape_text():
    xs = list(range(10_000))
    small_x, small_y = thin(xs, [x * 2 for x in xs])
    assert len(small_x) <= 200 and small_x[0] == 0 and small_x[-1] == 9_999 and small_y[-1] == 19_998
    svg = str(
        line_chart("c", "<script>", [0, 1], [("a&b", [0.0, 1.0])], x_label="x", y_label="y", marker=0.5)
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg and 'role="img"' in svg


class FixedEffects(CouponUpliftModel):
    """A served uplift model whose forecast the test sets: every shopper buys with `p_treated` under any
    coupon (spending `spend_treated`) and with 0.1 without (spending 25 CNY)."""

    feature_names_in_ = list(NUMERIC_FEATURES)
    cost_factor_ = 1.0

    def __init__(self, p_treated: float, spend_treated: float) -> None:
        self.p_treated, self.spend_treated = p_treated, spend_treated

    def fit(self, X, treatment, outcome, **fit_params):
        return self

    def predict_uplift(self, X, coupons=None):
        return np.full((len(X), 1), self.p_treated - 0.1)

    def predict_candidates(self, X, shopper_ids, coupons=None):
        return pd.DataFrame(
            [
                (s, c, 0.1, self.p_treated, 25.0, self.spend_treated)
                for s in shopper_ids
                for c in coupons["coupon_id"]
            ],
            columns=["shopper_id", "coupon_id", "p_control", "p_treated", "spend_control", "spend_treated"],
        )


@pytest.mark.parametrize(("p_treated", "spend", "warned"), [(0.5, 125.0, False), (1.0, 250.0, True)])
def test_plan_page_shows_the_forecast_beside_the_policy_value_and_warns(
    make_client, keys, session_factory, p_treated, spend, warned
):
    history = [f"H{i:03d}" for i in range(400)]
    store_randomized_campaign(session_factory, history, p_control=0.1, p_coupon=0.5, seed=6)  # +15 CNY each
    with transaction(session_factory) as s:
        cmp.create_campaign(s, cmp.CampaignInput("Next", "email", "3000", START, START + timedelta(days=7),
                                                 "0.2", campaign_id="CMP-PV"))  # fmt: skip
        create_coupon(s, CouponInput(kind="amount_off", value="30", min_spend="199", campaign_id="CMP-PV",
                                     requires_grant=True, coupon_id="N30"))  # fmt: skip
    client = make_client(
        uplift_source=ScriptedSource(versions={"1": FixedEffects(p_treated, spend)}, alias="1")
    )
    token = sign_in(client, keys["marketer"])
    planned = client.post(
        "/console/campaigns/CMP-PV/plan",
        data={"csrf_token": token, "budget": "3000", "margin_rate": "0.3"},
        headers={"HX-Request": "true"},
    )
    assert planned.status_code == 200, planned.text
    api = client.post("/v1/campaigns/CMP-PV/plan", json={"margin_rate": 0.3}, headers=auth(keys["marketer"]))
    value = api.json()["policy_value"]  # the same plan (same seed) through the API
    page = planned.text
    assert 'id="policy-value"' in page and "Doubly robust (DR)" in page and "Inverse propensity (IPS)" in page
    for figure in (value["model_profit"], value["dr"], value["dr_low"], value["dr_high"], value["ips"]):
        assert f"{figure:,.0f}" in page
    assert f"Estimates from {value['rows_used']} logged randomised rows" in page
    assert value["disagreement"] is warned
    assert ('role="alert" id="policy-value-warning"' in page) is warned
    assert (
        "outside the doubly robust interval" in page
        if warned
        else "within the doubly robust interval" in page
    )


def test_every_view_shows_the_campaigns_own_spent(
    client,
    keys,
    session_factory,
    campaign,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    """The campaign's `spent` (the counter its budget is held by) is the one figure everywhere: the API's
    list and detail, the progress, the CLI's list and the console's list and page, even where the coupon
    counters say otherwise (a coupon moved off the campaign, history before its `spent`)."""
    import json

    from sqlalchemy import update
    from typer.testing import CliRunner

    from commerce.campaigns import Campaign
    from commerce.coupons import Coupon
    from crosscart.cli import app
    from crosscart.settings import get_settings

    with transaction(session_factory) as s:
        s.execute(update(Coupon).where(Coupon.campaign_id == campaign).values(spent=Decimal("9.00")))
        s.execute(update(Campaign).where(Campaign.campaign_id == campaign).values(spent=Decimal("7.25")))
    marketer = auth(keys["marketer"])
    listed = client.get("/v1/campaigns", headers=marketer).json()["items"]
    assert [c["spent"] for c in listed if c["campaign_id"] == campaign] == ["7.25"]
    assert client.get(f"/v1/campaigns/{campaign}", headers=marketer).json()["spent"] == "7.25"
    with session_factory() as s:
        assert campaign_overview.progress(s, campaign).spent == Decimal("7.25")
    monkeypatch.setenv("CROSSCART_DATABASE_URL", str(session_factory.kw["bind"].url))
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["campaign", "list", "--name", "Spring"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert [c["spent"] for c in json.loads(out.stdout)["items"]] == ["7.25"]
    sign_in(client, keys["marketer"])
    assert re.search(r'<td class="num">7\.25</td>', client.get("/console/campaigns").text)
    assert 'id="campaign-spent">7.25<' in client.get(f"/console/campaigns/{campaign}").text


def test_coupon_terms_read_as_a_person_would(client, keys, session_factory, campaign):  # noqa: F811
    """Terms are stored with four decimals: the list and the campaign page showed "15.0000% off" and
    "10.0000 CNY off", and a cap and minimum spend without their currency."""
    with transaction(session_factory) as s:
        create_coupon(
            s,
            CouponInput(
                kind="percent_off", value="0.15", cap="60", min_spend="199", campaign_id=campaign,
                requires_grant=True, coupon_id="P15",
            ),
        )  # fmt: skip
    sign_in(client, keys["marketer"])
    listed = client.get("/console/coupons").text
    page = client.get(f"/console/campaigns/{campaign}").text
    for html in (listed, page):
        assert "15% off, cap 60.00 CNY, min spend 199.00 CNY" in html
        assert "10.00 CNY off" in html and ".0000" not in html


def test_the_marker_stands_at_the_plan_chosen_not_at_the_budget(make_client, keys, session_factory):
    """A budget far above what the whole profitable audience costs: the plan stops short of it, and the
    charts mark the plan (its expected cost); the marker stood at the budget, beyond the curve's end."""
    with transaction(session_factory) as s:
        cmp.create_campaign(s, cmp.CampaignInput("Big", "email", "90000", START, START + timedelta(days=7),
                                                 "0.2", campaign_id="CMP-BIG"))  # fmt: skip
        create_coupon(s, CouponInput(kind="amount_off", value="30", min_spend="199", campaign_id="CMP-BIG",
                                     requires_grant=True, coupon_id="B30"))  # fmt: skip
    client = make_client(uplift_source=ScriptedSource(versions={"1": FixedEffects(0.5, 125.0)}, alias="1"))
    token = sign_in(client, keys["marketer"])
    page = client.post(
        "/console/campaigns/CMP-BIG/plan",
        data={"csrf_token": token, "budget": "90000"},
        headers={"HX-Request": "true"},
    ).text
    assert "Plan at budget 90,000.00" in page
    cost = re.search(r"Expected cost</dt><dd>([\d,]+) CNY", page)[1]
    assert 0 < int(cost.replace(",", "")) < 9_000  # every profitable shopper costs a fraction of it
    for chart in ("curve-profit", "curve-size"):
        svg = page[page.index(f'<svg id="{chart}"') :].split("</svg>", 1)[0]
        assert f">chosen plan {cost}<" in svg and "90,000" not in svg  # nor an axis stretched to it
        x = float(re.search(r'<line x1="([\d.]+)"[^>]*class="marker"', svg)[1])
        assert PAD_L < x < WIDTH - PAD_R
