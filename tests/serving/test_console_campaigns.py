"""The marketer's campaign flow in the console over HTTP (runs without a browser): create with a coupon,
plan through the API's plan endpoint with the budget set from the form, curve and figures, schedule,
launch, progress, complete, report; the draft-only budget rule."""

from __future__ import annotations

import re

import pytest

from commerce.db import transaction
from commerce.errors import InvalidState
from commerce.services import campaign_overview
from serving.console.charts import line_chart, thin
from tests.serving.conftest import ScriptedSource, auth
from tests.serving.test_campaign_plan import START, campaign, effect_model  # noqa: F401  (fixtures)
from tests.serving.test_console import sign_in


def test_marketer_plans_launches_completes_and_reads_the_report(make_client, keys, campaign, effect_model):  # noqa: F811
    served = ScriptedSource(versions={"1": effect_model}, alias="1")
    client = make_client(uplift_source=served)
    token = sign_in(client, keys["marketer"])
    page = client.get(f"/console/campaigns/{campaign}")
    assert page.status_code == 200 and 'id="budget-range"' in page.text and "A10" in page.text

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
    assert "chosen 80" in planned.text and 'id="schedule-button"' in planned.text
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
    assert late.status_code == 422 and "only a draft" in late.text
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
