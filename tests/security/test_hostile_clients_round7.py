"""Round 7 of attacking the API as a hostile client: times at the edges of the calendar, on SQLite and
PostgreSQL. Each test failed before its fix."""

from __future__ import annotations

import pytest

from tests.search.conftest import api, keys, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.serving.conftest import auth

# Each is a valid ISO 8601 time with an offset, and none is a time UTC can hold (year 0 or year 10000).
OUT_OF_RANGE = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-00:01"]
EDGES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]  # the first and last instants UTC holds


def _requests(at: str) -> list[tuple[str, str, dict]]:
    """(method, URL, keyword arguments) of every request that carries a time, each carrying `at`."""
    window = {"starts_at": at, "ends_at": "9999-12-31T23:59:59Z"}
    return [
        ("GET", "/v1/campaigns", {"params": {"active_at": at}}),
        ("POST", "/v1/campaigns", {"json": {"name": "edge", "channel": "email", "budget": "10", **window}}),
        ("POST", "/v1/coupons", {"json": {"kind": "amount_off", "value": "5", **window}}),
        (
            "POST",
            "/v1/events",
            {
                "json": {
                    "events": [
                        {
                            "event_id": f"e-{at}",
                            "ts": at,
                            "shopper_id": "s1",
                            "event_type": "view",
                            "product_id": "P1",
                        }
                    ]
                }
            },
        ),
    ]


@pytest.mark.parametrize("at", OUT_OF_RANGE)
def test_a_time_utc_cannot_hold_is_refused(api, keys, at):  # noqa: F811
    """`9999-12-31T23:59:59-14:00` is year 10000 in UTC: it passed validation and overflowed where it was
    converted to UTC to be stored or compared, a 500 on every route taking a time. It is a 422."""
    api._transport.raise_server_exceptions = False
    for method, url, kwargs in _requests(at):
        response = api.request(method, url, headers=auth(keys["admin"]), **kwargs)
        assert response.status_code == 422, (method, url, response.status_code, response.text)
        assert "UTC" in response.json()["detail"]


@pytest.mark.parametrize("at", EDGES)
def test_the_first_and_last_instants_are_served(api, keys, at):  # noqa: F811
    api._transport.raise_server_exceptions = False
    for method, url, kwargs in _requests(at):
        response = api.request(method, url, headers=auth(keys["admin"]), **kwargs)
        assert response.status_code < 500, (method, url, response.status_code, response.text)
    listed = api.get("/v1/coupons", headers=auth(keys["admin"]))
    assert listed.status_code == 200, listed.text
    campaigns = api.get("/v1/campaigns", headers=auth(keys["admin"]))
    assert campaigns.status_code == 200, campaigns.text


def test_a_keyword_report_takes_times_with_their_offset(api, keys):  # noqa: F811
    """A report's `start` without an offset was compared with the server's aware clock: a 500 (and naive
    `start` and `end` were read as UTC, unlike every other time in the API). It needs an offset (422)."""
    api._transport.raise_server_exceptions = False
    body = {
        "name": "cream week",
        "daily_budget": "100.00",
        "product_ids": ["P1"],
        "keywords": [{"keyword": "面霜", "match_type": "broad", "bid": "0.80"}],
    }
    made = api.post("/v1/merchants/M1/keyword-campaigns", json=body, headers=auth(keys["m1"]))
    assert made.status_code == 201, made.text
    report = f"/v1/keyword-campaigns/{made.json()['campaign_id']}/report"
    naive = api.get(report, params={"start": "2026-01-01T00:00:00"}, headers=auth(keys["m1"]))
    assert naive.status_code == 422, naive.text
    for edge in ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z"):
        far = api.get(report, params={"start": edge}, headers=auth(keys["m1"]))
        assert far.status_code in (200, 422), far.text
    ok = api.get(report, params={"start": "2026-01-01T00:00:00+08:00"}, headers=auth(keys["m1"]))
    assert ok.status_code == 200, ok.text


def test_the_console_report_takes_any_day_of_the_calendar(api, keys):  # noqa: F811
    """The console's keyword report reads `?start=`/`?end=` as days: `end=9999-12-31` (its day after
    does not exist) and `end=0001-01-01` without a start (30 days before it do not) were 500s. They show
    the last 30 days with the page's date message, as a malformed date does."""
    from tests.serving.test_console import sign_in

    api._transport.raise_server_exceptions = False
    made = api.post(
        "/v1/merchants/M1/keyword-campaigns",
        json={
            "name": "cream week",
            "daily_budget": "100.00",
            "product_ids": ["P1"],
            "keywords": [{"keyword": "面霜", "match_type": "broad", "bid": "0.80"}],
        },
        headers=auth(keys["m1"]),
    )
    sign_in(api, keys["m1"])
    page = f"/console/keyword-campaigns/{made.json()['campaign_id']}"
    for query in ("end=9999-12-31", "end=0001-01-01", "start=0001-01-01&end=9999-12-31"):
        shown = api.get(f"{page}?{query}")
        assert shown.status_code == 200, (query, shown.status_code)
        assert "Dates must" in shown.text, query
    assert "Dates must" not in api.get(f"{page}?start=0001-01-01&end=2026-01-01").text
