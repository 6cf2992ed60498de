"""What a first-time user of the console tripped over (session 21's tour in Chromium), over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from commerce.db import transaction
from commerce.merchants import BrandAuthorization, Merchant
from tests.serving.test_console import CSRF, sign_in


def test_recently_decided_merchants_are_the_latest_decisions_first(client, keys, session_factory):
    """ "Recently decided" read the first 100 merchants by id in id order: a decision just taken on a
    merchant past the hundredth never showed, and a years-old approval came before yesterday's."""
    now = datetime.now(UTC)
    with transaction(session_factory) as s:
        s.add_all(
            Merchant(
                merchant_id=f"z{i:03d}",
                name=f"Shop {i:03d}",
                country="JP",
                licence_no=f"Z-{i}",
                status="approved",
                reviewed_at=now - timedelta(days=1000 - i),
                brands=[BrandAuthorization(brand="B")],
            )  # fmt: skip
            for i in range(120)
        )
    sign_in(client, keys["admin"])
    page = client.get("/console/merchants")
    token = CSRF.search(page.text).group(1)
    approved = client.post(
        "/console/merchants/m3/review",
        data={"decision": "approve", "csrf_token": token},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    recent = client.get("/console/merchants").text.split("Recently decided", 1)[1]
    shown = re.findall(r'id="status-([^"]+)"', recent)
    assert shown[:3] == ["m3", "z119", "z118"] and len(shown) == 20
