"""A reverse proxy missing from CROSSCART_FORWARDED_ALLOW_IPS makes every visitor one client (anonymous
rate limit, failed-key throttle, ad-click dedupe) and nothing said so: the first request that shows it is
logged once and named in /ready."""

from __future__ import annotations

import logging

from starlette.testclient import TestClient

from serving.proxies import UntrustedProxyCheck


def scope(host: str, forwarded: str | None = "203.0.113.9") -> dict:
    headers = [(b"host", b"api")] + ([(b"x-forwarded-for", forwarded.encode())] if forwarded else [])
    return {"type": "http", "client": (host, 40000), "headers": headers}


def test_only_a_private_sender_of_forwarded_for_outside_the_trusted_list_is_an_untrusted_proxy(caplog):
    with caplog.at_level(logging.WARNING, logger="serving.proxies"):
        quiet = UntrustedProxyCheck("")
        assert not quiet.check(scope("10.0.0.5", None))  # no header: a direct client
        assert not quiet.check(scope("8.8.4.4"))  # a public address: a client, maybe lying
        assert not quiet.check(scope("testclient"))  # no address to judge
        assert caplog.records == []
        assert quiet.check(scope("10.0.0.5")) and quiet.seen_from == "10.0.0.5"
        assert quiet.check(scope("::1")) and quiet.seen_from == "10.0.0.5"  # the first one stays
    assert len(caplog.records) == 1 and "CROSSCART_FORWARDED_ALLOW_IPS" in caplog.records[0].getMessage()
    trusted = UntrustedProxyCheck("10.0.0.0/8, 127.0.0.1")
    assert not trusted.check(scope("10.0.0.5")) and not trusted.check(scope("127.0.0.1"))
    assert not trusted.check(scope("192.168.1.4", "192.168.1.4"))  # uvicorn believed the proxy: a client
    assert trusted.check(scope("172.16.0.2", "203.0.113.9"))  # a second proxy nobody named
    assert not UntrustedProxyCheck("*").check(scope("10.0.0.5"))


def test_ready_names_the_untrusted_proxy_after_its_first_request(client, caplog):
    assert client.get("/ready").json()["untrusted_proxy"] is None
    proxied = TestClient(client.app, client=("10.0.0.5", 40000))  # the app is started by `client`
    with caplog.at_level(logging.WARNING, logger="serving.proxies"):
        for _ in range(3):
            proxied.get("/v1/products", headers={"X-Forwarded-For": "203.0.113.9"})
    assert client.get("/ready").json()["untrusted_proxy"] == "10.0.0.5"
    assert sum("not trusted" in r.getMessage() for r in caplog.records) == 1


def test_an_untrusted_proxy_whose_address_is_part_of_a_forwarded_one_is_still_seen():
    """`172.16.0.1` is not the forwarded client `172.16.0.12` (nor one of `10.0.0.7, 172.16.0.19`): only a
    whole entry of the header is what uvicorn put in place of a trusted proxy's address."""
    trusted = UntrustedProxyCheck("10.0.0.0/8")
    assert trusted.check(scope("172.16.0.1", "172.16.0.12")) and trusted.seen_from == "172.16.0.1"
    assert UntrustedProxyCheck("10.0.0.0/8").check(scope("172.16.0.1", "10.0.0.7, 172.16.0.19"))
    assert not UntrustedProxyCheck("10.0.0.0/8").check(scope("172.16.0.1", "203.0.113.9, 172.16.0.1"))


def test_forwarded_entries_with_ports_are_read_as_uvicorn_reads_them():
    """A trusted proxy may append `ip:port` (or `[ipv6]:port`): uvicorn strips the port and brackets
    from the client it puts in place, so the entry compared with that client must be stripped too. It was
    compared raw: a visitor behind the trusted proxy was taken for an untrusted proxy, and a scraper on the
    proxy's host was refused /metrics."""
    trusted = UntrustedProxyCheck("10.0.0.0/8")
    assert not trusted.check(scope("192.168.1.4", "192.168.1.4:5000"))
    assert trusted.address_is_own(scope("192.168.1.4", "192.168.1.4:5000"))
    assert trusted.address_is_own(scope("fd00::4", "203.0.113.9, [fd00::4]:443, 10.0.0.2:80"))
    assert not trusted.address_is_own(scope("fd00::4", "[fd00::4]:443, 203.0.113.9"))
