"""`/docs` and `/redoc` load every asset from the API itself: no page references another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _page_urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    # URLs in the inline scripts too (the spec URL, bundle options)
    parser.urls += re.findall(r"""['"](https?://[^'"]+|/[^'"\s]*)['"]""", html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_no_external_host_and_their_assets_load(client, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _page_urls(r.text)
    external = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert external == [], f"{page} loads {external}"
    assets = [u for u in urls if u.startswith("/static/")]
    assert assets, "the page must load its bundle from /static"
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert "/openapi.json" in r.text


def test_vendored_bundles_fetch_nothing_from_a_cdn(client):
    for url in ("/static/vendor/redoc/redoc.standalone.js", "/static/vendor/swagger-ui/swagger-ui-bundle.js"):
        body = client.get(url).text
        assert not re.search(r"https?://(cdn\.|unpkg\.com|cdnjs\.|fonts\.googleapis)", body), url


def test_swagger_ui_does_not_call_the_public_validator(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_root_address_leads_to_the_docs(client):
    """uvicorn prints http://HOST:PORT at start-up; opening it must not answer a bare 404."""
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/docs"
