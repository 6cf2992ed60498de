"""Who is calling (API keys) and how often they may call (per-key rate limits).

Looking a key up costs a database query, so authenticated principals are cached in-process for a short
TTL keyed by the key's hash; a revoked key stops working within `AUTH_CACHE_SECONDS`. Rate-limit counters
live in Redis when configured, so every replica shares them; otherwise in this process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from commerce.services.access import hash_key

log = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 30.0
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """The caller: a role plus the shopper or merchant a key is bound to."""

    role: str
    key_id: int | None = None
    shopper_id: str | None = None
    merchant_id: str | None = None
    client: str = ""  # the client address, which identifies anonymous callers for throttling

    @property
    def rate_key(self) -> str:
        return f"key:{self.key_id}" if self.key_id is not None else f"ip:{self.client}"


class PrincipalCache:
    """key hash -> (Principal or None, expiry). Unknown keys are cached too, so guessing is not free."""

    def __init__(self, ttl: float = AUTH_CACHE_SECONDS, max_entries: int = 100_000):
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[Principal | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, plaintext: str) -> tuple[bool, Principal | None]:
        hit = self._entries.get(hash_key(plaintext))
        if hit is None or hit[1] < time.monotonic():
            return False, None
        return True, hit[0]

    def put(self, plaintext: str, principal: Principal | None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[hash_key(plaintext)] = (principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class MemoryCounter:
    """Fixed one-minute windows in this process (development and single-replica deployments)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def incr(self, key: str, window: int) -> int:
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            count = self._counts.get((key, window), 0) + 1
            self._counts[(key, window)] = count
            return count


class RedisCounter:
    """Fixed one-minute windows in Redis, shared by every replica; INCR and EXPIRE in one round trip."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def incr(self, key: str, window: int) -> int:
        name = f"crosscart:rl:{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        return int(pipe.execute()[0])


class RateLimiter:
    """Per-principal requests per minute. Roles in `unthrottled` (the storefront by default) pass freely.

    If Redis fails the limiter counts in-process rather than refusing traffic or letting it through
    uncounted.
    """

    def __init__(
        self,
        per_minute: int,
        anonymous_per_minute: int,
        redis_url: str = "",
        unthrottled: tuple[str, ...] = ("storefront",),
    ) -> None:
        self.per_minute, self.anonymous_per_minute = per_minute, anonymous_per_minute
        self.unthrottled = unthrottled
        self._memory = MemoryCounter()
        self._shared = RedisCounter(redis_url) if redis_url else None

    def limit_for(self, principal: Principal) -> int | None:
        if principal.role in self.unthrottled:
            return None
        return self.anonymous_per_minute if principal.role == ANONYMOUS else self.per_minute

    def check(self, principal: Principal) -> tuple[bool, int, int]:
        """(allowed, limit, seconds until the window resets); limit 0 means unlimited."""
        limit = self.limit_for(principal)
        if limit is None:
            return True, 0, 0
        now = time.time()
        window = int(now // 60)
        counter = self._shared or self._memory
        try:
            count = counter.incr(principal.rate_key, window)
        except Exception as exc:  # Redis down: degrade to local counting
            log.warning("rate-limit store unavailable, counting locally: %s", exc)
            count = self._memory.incr(principal.rate_key, window)
        return count <= limit, limit, int(60 - now % 60) + 1
