"""Noticing a reverse proxy the API does not trust. Behind a proxy missing from
`CROSSCART_FORWARDED_ALLOW_IPS`, every request's client address is the proxy's: all anonymous visitors
share one anonymous rate limit, one failed-key throttle and one anonymous ad-click dedupe (fewer clicks
billed, never more). Nothing failed visibly, so the first request that shows it (from a private or
loopback address, with an `X-Forwarded-For` header uvicorn did not believe) is logged once per worker
and named in `/ready` (`untrusted_proxy`)."""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)

_FORWARDED_FOR = b"x-forwarded-for"


class UntrustedProxyCheck:
    """Checks requests until one shows an untrusted proxy (`seen_from` then holds its address); the
    caller stops asking after that, so the cost is one scan of the headers per request until then."""

    def __init__(self, forwarded_allow_ips: str) -> None:
        names = [n.strip() for n in forwarded_allow_ips.split(",") if n.strip()]
        self.trust_all = "*" in names
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in names if n != "*" and _is_ip(n)]
        self.seen_from: str | None = None

    def check(self, scope) -> bool:
        """Whether this request showed an untrusted proxy (logged once; later calls are not needed)."""
        if self.trust_all or self.seen_from is not None:
            return self.seen_from is not None
        forwarded = next((v for k, v in scope["headers"] if k == _FORWARDED_FOR), None)
        client = scope.get("client")
        if forwarded is None or not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # a Unix socket or a test client: no address to judge
            return False
        if not (address.is_private or address.is_loopback) or any(address in n for n in self.trusted):
            return False
        entries = {entry.strip() for entry in forwarded.decode("latin-1").split(",")}
        if self.trusted and client[0] in entries:
            return False  # uvicorn believed a trusted proxy: this is a forwarded client (a whole entry)
        self.seen_from = client[0]
        log.warning(
            "requests come through a proxy that is not trusted: %s sent X-Forwarded-For but is not in"
            " CROSSCART_FORWARDED_ALLOW_IPS, so every visitor behind it counts as one client (anonymous"
            " rate limit, failed-key throttle, ad-click dedupe); name the proxy there if it is yours",
            client[0],
        )
        return True


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_network(name, strict=False)
    except ValueError:
        return False
    return True
