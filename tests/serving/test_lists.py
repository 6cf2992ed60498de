"""`GET /v1/campaigns` with filters, and the same page shape (items, total, limit, offset) on every list,
API keys and experiments included; the console pages those lists the same way."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.serving.conftest import NOW, auth


def _campaign(client, key, name, channel, start_days, days):
    body = {
        "name": name,
        "channel": channel,
        "budget": "100.00",
        "starts_at": (NOW + timedelta(days=start_days)).isoformat(),
        "ends_at": (NOW + timedelta(days=start_days + days)).isoformat(),
    }
    created = client.post("/v1/campaigns", json=body, headers=auth(key))
    assert created.status_code == 201, created.text
    return created.json()["campaign_id"]


def test_campaigns_list_filters_and_pages(client, keys):
    mk = keys["marketer"]
    email = _campaign(client, mk, "Double 11 e-mail", "email", 0, 12)
    site = _campaign(client, mk, "Double 11 site", "site", 5, 3)
    later = _campaign(client, mk, "Spring", "social", 30, 5)

    def get(**params):
        r = client.get("/v1/campaigns", params=params, headers=auth(mk))
        assert r.status_code == 200, r.text
        return r.json()

    page = get()
    assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
    assert [c["campaign_id"] for c in page["items"]] == [later, site, email]  # newest first
    assert all(c["spent"] == "0.00" and c["status"] == "draft" for c in page["items"])
    assert [c["campaign_id"] for c in get(channel="site")["items"]] == [site]
    running = get(active_at=(NOW + timedelta(days=6)).isoformat())
    assert {c["campaign_id"] for c in running["items"]} == {email, site} and running["total"] == 2
    assert [c["campaign_id"] for c in get(name="spr")["items"]] == [later]
    second = get(limit=2, offset=2)
    assert second["total"] == 3 and [c["campaign_id"] for c in second["items"]] == [email]
    assert get(status="running")["items"] == []

    for bad in (
        {"status": "paused"},
        {"channel": "fax"},
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"active_at": "2026-11-07T00:00:00"},
    ):  # fmt: skip (a time without zone is ambiguous)
        r = client.get("/v1/campaigns", params=bad, headers=auth(mk))
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_keys_and_experiments_page_like_every_list(client, keys):
    admin = auth(keys["admin"])
    for _ in range(3):
        assert client.post("/v1/api-keys", json={"role": "marketer"}, headers=admin).status_code == 201
    page = client.get("/v1/api-keys", params={"role": "marketer", "limit": 2}, headers=admin).json()
    assert set(page) == {"items", "total", "limit", "offset"}
    assert (
        page["total"] >= 3 and len(page["items"]) == 2 and {k["role"] for k in page["items"]} == {"marketer"}
    )
    rest = client.get(
        "/v1/api-keys", params={"role": "marketer", "limit": 2, "offset": 2}, headers=admin
    ).json()
    assert not {k["id"] for k in rest["items"]} & {k["id"] for k in page["items"]}
    assert client.get("/v1/api-keys", params={"role": "root"}, headers=admin).status_code == 422

    ds = auth(keys["data_scientist"])
    for name in ("e1", "e2", "e3"):
        body = {"name": name, "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]}
        assert client.post("/v1/experiments", json=body, headers=ds).status_code == 201
    exps = client.get("/v1/experiments", params={"limit": 2, "offset": 1}, headers=ds).json()
    assert exps["total"] == 3 and [e["name"] for e in exps["items"]] == ["e2", "e3"]


def test_list_operations_share_one_page_schema(client):
    spec = client.get("/openapi.json").json()
    lists = {
        ("/v1/campaigns", "PageOut_CampaignOut_"),
        ("/v1/api-keys", "PageOut_ApiKeyOut_"),
        ("/v1/experiments", "PageOut_ExperimentOut_"),
    }
    for path, schema in lists:
        op = spec["paths"][path]["get"]
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + schema), (path, ref)
        assert {p["name"] for p in op["parameters"]} >= {"limit", "offset"}
        assert set(spec["components"]["schemas"][schema]["required"]) == {"items", "total", "limit", "offset"}


def test_console_lists_page_with_their_filters(client, keys):
    from tests.serving.test_console import sign_in

    for i in range(3):
        _campaign(client, keys["marketer"], f"Week {i}", "email", 0, 7)
    sign_in(client, keys["marketer"])
    first = client.get("/console/campaigns?status=draft")
    assert first.status_code == 200 and "1–3 of 3 campaigns." in first.text
    assert "Previous" not in first.text and "Next" not in first.text
    last = client.get("/console/campaigns?status=draft&offset=2")
    assert "3 of 3 campaigns." in last.text and last.text.count("Week ") == 1
    assert 'href="/console/campaigns?status=draft&amp;offset=0">Previous' in last.text  # the filter stays
    assert "0 campaigns." in client.get("/console/campaigns?status=running").text

    client.cookies.clear()
    sign_in(client, keys["admin"])
    keys_page = client.get("/console/keys")
    assert keys_page.status_code == 200 and re.search(r"1–\d+ of \d+ keys\.", keys_page.text)
    assert "0 experiments." in client.get("/console/experiments").text
