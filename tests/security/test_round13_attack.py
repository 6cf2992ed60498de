"""Round 13: a hostile client against the exports and the console's URLs, on the tiny marketplace of
tests/serving. Each test failed before its fix."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from commerce.db import transaction
from commerce.services import campaigns
from tests.serving.conftest import NOW, auth


def _campaign_with_audience(factory, campaign_id: str | None = None) -> str:
    """A draft campaign (`campaign_id` chosen as `crosscart campaign create --id` chooses one) whose
    audience is s1 and s2, both held out."""
    with transaction(factory) as s:
        data = campaigns.CampaignInput(
            "Spring", "email", "100", NOW, NOW + timedelta(days=7), "0.5", campaign_id
        )
        campaign_id = campaigns.create_campaign(s, data).campaign_id
        campaigns.set_audience(s, campaign_id, [("s1", "control"), ("s2", "control")])
    return campaign_id


def test_the_audience_export_names_its_file_in_one_header_whatever_the_id(client, keys, session_factory):
    """The audience CSV's Content-Disposition put the campaign id raw between quotes. A campaign id is
    any word character first, then anything but controls, `/` and invisible characters: `春季促销`
    (outside Latin-1, which HTTP headers are written in) made every export of that campaign a 500, and
    `x";y=.html` closed the quoted name and added a parameter of its own. A name that is not plain
    ASCII is sent as RFC 6266's `filename*` (UTF-8, percent-encoded); 2 of 3 ids failed, none now."""
    marketer = auth(keys["marketer"])
    client._transport.raise_server_exceptions = False
    expected = {
        "ab": 'attachment; filename="ab-audience.csv"',
        "春季促销": "attachment; filename*=utf-8''%E6%98%A5%E5%AD%A3%E4%BF%83%E9%94%80-audience.csv",
        'x";y=.html': "attachment; filename*=utf-8''x%22%3By%3D.html-audience.csv",
    }
    for campaign_id, header in expected.items():
        _campaign_with_audience(session_factory, campaign_id)
        export = client.get(f"/v1/campaigns/{quote(campaign_id, safe='')}/audience.csv", headers=marketer)
        assert export.status_code == 200, (campaign_id, export.status_code)
        assert export.headers["content-disposition"] == header
        assert export.text.splitlines()[1:] == ["s1,control,,,", "s2,control,,,"]
