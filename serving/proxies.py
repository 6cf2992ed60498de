"""Noticing a reverse proxy the API does not trust. Behind a proxy missing from
`CROSSCART_FORWARDED_ALLOW_IPS`, every request's client address is the proxy's: all anonymous visitors
share one anonymous rate limit, one failed-key throttle and one anonymous ad-click dedupe (fewer clicks
billed, never more). Nothing failed visibly, so the first request that shows it (from a private or
loopback address, with an `X-Forwarded-For` header uvicorn did not believe) is logged once per worker
and named in `/ready` (`untrusted_proxy`). The same judgement tells `/metrics` whether a client address
is the sender's own (`address_is_own`): behind such a proxy on the loopback, every visitor is 127.0.0.1."""

from __future__ import annotations

import ipaddress
import logging

from uvicorn.middleware.proxy_headers import _TrustedHosts

log = logging.getLogger(__name__)

_FORWARDED_FOR = b"x-forwarded-for"


class UntrustedProxyCheck:
    """Checks requests until one shows an untrusted proxy (`seen_from` then holds its address); the
    caller stops asking after that, so the cost is one scan of the headers per request until then."""

    def __init__(self, forwarded_allow_ips: str) -> None:
        names = [n.strip() for n in forwarded_allow_ips.split(",") if n.strip()]
        self.trust_all = "*" in names
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in names if n != "*" and _is_ip(n)]
        # uvicorn's own (private) parser of the setting and of X-Forwarded-For, the one its proxy-headers
        # middleware uses: the entry chosen here is the one it put in place, however it reads an entry
        # (it strips `ip:port`'s port and IPv6 brackets; a copy compared raw entries and missed those)
        self._uvicorn = _TrustedHosts(forwarded_allow_ips)
        self.seen_from: str | None = None

    def check(self, scope) -> bool:
        """Whether this request showed an untrusted proxy (logged once; later calls are not needed)."""
        if self.trust_all or self.seen_from is not None:
            return self.seen_from is not None
        client = scope.get("client")
        if not client or self.address_is_own(scope):
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # a Unix socket or a test client: no address to judge
            return False
        if not (address.is_private or address.is_loopback) or any(address in n for n in self.trusted):
            return False
        self.seen_from = client[0]
        log.warning(
            "requests come through a proxy that is not trusted: %s sent X-Forwarded-For but is not in"
            " CROSSCART_FORWARDED_ALLOW_IPS, so every visitor behind it counts as one client (anonymous"
            " rate limit, failed-key throttle, ad-click dedupe); name the proxy there if it is yours",
            client[0],
        )
        return True

    def address_is_own(self, scope) -> bool:
        """Whether the request's client address is its sender's own, not a proxy's nor one a header chose:
        no `X-Forwarded-For`, or one uvicorn believed from a trusted proxy, which leaves as the client the
        entry it picks. Under `*` a header is believed from anyone, so a client names any address it likes."""
        forwarded = [v for k, v in scope["headers"] if k == _FORWARDED_FOR]
        if not forwarded:
            return True
        if self.trust_all or not self.trusted:
            return False
        client = scope.get("client")
        return bool(client) and client[0] == self._believed_entry(b",".join(forwarded).decode("latin-1"))

    def _believed_entry(self, forwarded: str) -> str:
        """uvicorn's choice among a trusted proxy's `X-Forwarded-For` entries (every such header's), its
        port dropped: the rightmost that is not a trusted proxy (all of them trusted: the leftmost). A
        proxy appends its own client, so behind an untrusted one the rightmost entry is the visitor's
        address, not the proxy's, whatever the visitor forged to its left."""
        return self._uvicorn.get_trusted_client_address(forwarded)[0]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_network(name, strict=False)
    except ValueError:
        return False
    return True
