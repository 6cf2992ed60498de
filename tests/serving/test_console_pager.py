"""Every console list asked for past its last item (`?offset=` beyond the total: a stale link, a typed
address) redirects to its last page, its other parameters kept (`serving.console.web.past_the_end`); it
read "1251 of 60 shipped orders." over an empty table."""

from __future__ import annotations

import re

import pytest

from tests.serving.test_console import sign_in
from tests.serving.test_console_shop import _shipped_order

PAGER = re.compile(r'<p class="note">(?:(\d+)(?:–(\d+))? of )?(\d+) ([a-z ]+)\.')


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("admin", "/console/keys"),
        ("marketer", "/console/campaigns?status=draft"),
        ("marketer", "/console/coupons"),
        ("data_scientist", "/console/experiments"),
        ("merchant", "/console/keyword-campaigns"),
        ("merchant", "/console/shop"),
        ("merchant", "/console/shop/orders"),
        ("admin", "/console/shop/orders?merchant=m2"),
    ],
)
def test_every_list_past_its_end_redirects_to_its_last_page(client, keys, role, path, monkeypatch):
    from serving.console import shop

    monkeypatch.setattr(shop, "PAGE", 2)  # m1 has more than two products: a last page after the first
    sign_in(client, keys[role])
    sep = "&" if "?" in path else "?"
    r = client.get(f"{path}{sep}offset=100000", follow_redirects=False)
    assert r.status_code == 303, r.text
    target = r.headers["location"]
    assert target.startswith(path), target  # the list's own filters and merchant kept
    last = client.get(target)
    assert last.status_code == 200
    first, to, total, _ = PAGER.search(last.text).groups()
    if int(total):
        assert int(to or first) == int(total), last.text  # the page holds the last item
    else:
        assert target == path  # an empty list: its first page
    assert client.get(target, follow_redirects=False).status_code == 200  # a page in range stays


def test_shipments_past_the_end_land_on_the_last_page(client, keys, session_factory, monkeypatch):
    from serving.console import shop

    monkeypatch.setattr(shop, "PAGE", 2)
    for i in range(3):
        _shipped_order(session_factory, "p05", f"SF-END-{i}")  # m2's goods
    sign_in(client, keys["merchant2"])
    r = client.get("/console/shop/orders?offset=50", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/shop/orders?offset=2"
    assert "3 of 3 shipped orders." in client.get(r.headers["location"]).text
    sign_in(client, keys["admin"])
    r = client.get("/console/shop/orders?merchant=m2&offset=3", follow_redirects=False)
    assert r.headers["location"] == "/console/shop/orders?merchant=m2&offset=2"
    assert client.get("/console/shop/orders?merchant=m2&offset=1").status_code == 200  # unaligned, in range
