"""Who is calling (API keys) and how often they may call (per-key rate limits).

Looking a key up costs a database query, so principals are cached in-process by the key's hash, bounded by
least-recent use (a flood of keys evicts the coldest entries, never the whole cache). An entry is fresh
for `AUTH_CACHE_SECONDS` while revocations are pushed to every replica (serving.revocations, over Redis),
for `AUTH_POLL_SECONDS` while that feed is down, then checked against the database again; while the
database is unreachable a key seen valid keeps working for up to `stale_seconds` (reads are served from
memory through an outage). Unknown keys are remembered apart, so guessing is neither free nor able to push
valid keys out, and failed checks are throttled per client address before any lookup. Rate limits are
sliding windows from the `limits` library, counted in Redis when configured, so every replica shares them,
behind a circuit breaker that counts locally while Redis is slow or gone, or may evict their keys.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass

from cachetools import LRUCache
from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import ResponseError

from commerce.services.access import hash_key
from serving.proxies import UntrustedProxyCheck

log = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 30.0
AUTH_POLL_SECONDS = 1.0  # answers stand this long while revocations cannot be pushed (Redis down)
AUTH_RETRY_SECONDS = 5.0  # while the database is down, how often one request re-checks a stale key
ANONYMOUS = "anonymous"
WINDOW_SECONDS = 60  # rate limits are per minute
IPV6_CLIENT_PREFIX = 64  # one IPv6 client: a subscriber is handed a whole /64 (RFC 6177)
STORE_VERIFY_SECONDS = 60.0  # how often the shared store's eviction policy is read again (CONFIG can change)
PROBE_ITEM = RateLimitItemPerMinute(1_000_000)  # what the breaker's probe counts: never refused


def client_address(host: str | None) -> str:
    """The address an anonymous caller's limits count against (rate limit, failed-key throttle, ad-click
    billing): an IPv4 address as it is, an IPv6 one as its /64. A host given a /64 picks any of its 2^64
    addresses per request, so counting whole IPv6 addresses let it change address for every request and
    never meet a limit. An IPv4-mapped IPv6 address is its IPv4 address."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return host or ""  # not an address (a test client's name, a Unix socket): as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class MetricsAccess:
    """Who may read `/metrics` (route names, request counts, latencies, model versions, refresh-loop ages
    and failures): a client whose own address is in one of the `allow` networks, or one presenting
    `token` as a bearer credential, compared in constant time (empty: no token admits). The address is the
    one uvicorn derived (a trusted proxy's `X-Forwarded-For` believed); a request forwarded by a proxy the
    app does not trust carries the proxy's address, so it is admitted by its token only: a proxy on the
    loopback would otherwise have let every visitor in."""

    def __init__(
        self,
        allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
        token: str,
        proxies: UntrustedProxyCheck,
    ) -> None:
        self.networks = allow
        self.token = token.encode()
        self.proxies = proxies

    def admits(self, scope, bearer: str | None) -> bool:
        if self.token and bearer is not None and hmac.compare_digest(bearer.encode(), self.token):
            return True
        client = scope.get("client")
        if not client or not self.proxies.address_is_own(scope):
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # a Unix socket or a test client's name: no address to allow
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's 127.0.0.1
        return any(address in network for network in self.networks)


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


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    checked_at: float  # when the database last confirmed it (or, while it is down, last retried)
    valid_until: float  # last confirmed + stale_seconds: never served past this
    key_hash: str  # the key it stands for: the entry's own hash, or a console session's key's


class PrincipalCache:
    """key hash -> Principal (LRU, `max_entries`), plus an LRU of unknown or revoked key hashes.

    An answer stands for `ttl` while revocations reach this replica at once (`pushed`: its own, or every
    replica's through serving.revocations' Redis feed); while the feed is down it stands for
    `poll_seconds` only, so a key revoked elsewhere is refused within that time. An answer counts from
    when the database was asked, and one asked before the key was last discarded here is not kept: a
    check in flight when the key was revoked read it live, and kept, served it for another `ttl`.

    A cache keyed by something else that stands for a key (the console's sessions) `follow`s this one:
    every discard here, this replica's or another's through the feed, is done there too."""

    def __init__(
        self,
        ttl: float = AUTH_CACHE_SECONDS,
        max_entries: int = 100_000,
        stale_seconds: float = 900.0,
        max_unknown: int = 10_000,
        poll_seconds: float = AUTH_POLL_SECONDS,
    ):
        self.ttl, self.stale_seconds, self.poll_seconds = ttl, stale_seconds, poll_seconds
        self.pushed = True  # False while a configured revocation feed is not listening
        self._not_before = -1e18  # answers older than this are re-checked (see expire_all)
        self._valid: LRUCache[str, _Entry] = LRUCache(max_entries)
        self._unknown: LRUCache[str, float] = LRUCache(max_unknown)  # hash -> when found unknown
        self._discarded: LRUCache[str, float] = LRUCache(max_unknown)  # hash -> when last discarded
        self._lock = threading.Lock()
        self._followers: list[PrincipalCache] = []
        self._tagged = False  # some entry stands for another hash's key (`put`'s key_hash)

    def follow(self, follower: PrincipalCache) -> None:
        """Discard in `follower` whatever is discarded here (`discard`)."""
        self._followers.append(follower)

    @property
    def fresh_for(self) -> float:
        """How long a database answer stands now."""
        return self.ttl if self.pushed else min(self.ttl, self.poll_seconds)

    def _fresh(self, checked_at: float, now: float) -> bool:
        return checked_at >= self._not_before and now - checked_at <= self.fresh_for

    def get(self, plaintext: str) -> tuple[bool, Principal | None]:
        """(True, principal) for a fresh valid key, (True, None) for a key known to be unknown or revoked,
        (False, None) when the database must be asked."""
        digest, now = hash_key(plaintext), time.monotonic()
        with self._lock:  # LRUCache reorders on every read
            entry = self._valid.get(digest)
            if entry is not None and self._fresh(entry.checked_at, now):
                return True, entry.principal
            unknown = self._unknown.get(digest)
        if unknown is not None and self._fresh(unknown, now):
            return True, None
        return False, None

    def stale(self, plaintext: str) -> Principal | None:
        """A key confirmed valid within `stale_seconds`; the answer while the database cannot be asked.
        Its next re-check is put off (AUTH_RETRY_SECONDS at most) so an outage costs one attempt per key per
        interval, not one per request."""
        digest, now = hash_key(plaintext), time.monotonic()
        with self._lock:
            entry = self._valid.get(digest)
            if entry is None or entry.valid_until < now:
                return None
            fresh = self.fresh_for
            retry_at = now - fresh + min(fresh, AUTH_RETRY_SECONDS)  # fresh again until then
            checked = max(retry_at, self._not_before)
            self._valid[digest] = _Entry(entry.principal, checked, entry.valid_until, entry.key_hash)
            return entry.principal

    def put(
        self,
        plaintext: str,
        principal: Principal | None,
        asked_at: float | None = None,
        key_hash: str | None = None,
    ) -> None:
        """Record what the database said about a key when asked at `asked_at` (`time.monotonic()`; now
        by default); `key_hash` is the key's when `plaintext` is not the key itself (a console session's
        id). A valid answer asked no later than the last discard of either is dropped: it may have been
        read before the revocation (or sign-out) committed."""
        digest, now = hash_key(plaintext), time.monotonic()
        asked = now if asked_at is None else asked_at
        owner = key_hash or digest
        with self._lock:
            self._tagged = self._tagged or owner != digest
            if principal is None:
                self._valid.pop(digest, None)
                self._unknown[digest] = asked
            elif asked > max(self._discarded.get(digest, -math.inf), self._discarded.get(owner, -math.inf)):
                self._unknown.pop(digest, None)
                self._valid[digest] = _Entry(principal, asked, asked + self.stale_seconds, owner)

    def discard(self, key_hash: str) -> None:
        """Forget one key (it was revoked) or console session (it ended) at once, here or on another
        replica, with every answer about it asked until now (`put`), the answers standing for it (a
        revoked key's console sessions: one pass over the entries, revocations are rare) and the
        followers' (`follow`)."""
        with self._lock:
            self._valid.pop(key_hash, None)
            self._unknown.pop(key_hash, None)
            self._discarded[key_hash] = time.monotonic()
            if self._tagged:  # the scan reorders the LRU: a rare revocation's cost
                for digest in [d for d, entry in self._valid.items() if entry.key_hash == key_hash]:
                    del self._valid[digest]
        for follower in self._followers:
            follower.discard(key_hash)

    def expire_all(self) -> None:
        """Re-check every cached answer before trusting it again (revocations may have been missed while
        the feed was down); keys stay usable from memory through a database outage as before."""
        self._not_before = time.monotonic()

    def __len__(self) -> int:
        return len(self._valid)


class FailedAuthThrottle:
    """Failed key checks per client address in one-minute windows (LRU-bounded addresses). Over the limit,
    an address gets 429 for any key not already cached as valid, before the database is asked."""

    def __init__(self, per_minute: int, max_clients: int = 100_000):
        self.per_minute = per_minute
        self._failures: LRUCache[str, tuple[int, int]] = LRUCache(max_clients)  # client -> (window, n)
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try unknown keys again; 0 when it may now."""
        now = time.time()
        with self._lock:
            window, count = self._failures.get(client, (-1, 0))
        if window != int(now // 60) or count < self.per_minute:
            return 0
        return int(60 - now % 60) + 1

    def failed(self, client: str) -> None:
        window = int(time.time() // 60)
        with self._lock:
            seen, count = self._failures.get(client, (window, 0))
            self._failures[client] = (window, count + 1 if seen == window else 1)


class EvictingStore(Exception):
    """The shared store may evict the limiter's keys: a `maxmemory` with a `maxmemory-policy` other than
    `noeviction` (the `volatile-*` ones included: every counter has a TTL). Full, it forgot the counters
    with the other keys (60 calls at 50 a minute, none refused), so the limiter counts locally instead."""

    def __init__(self, policy: str) -> None:
        super().__init__(
            f"the rate-limit store evicts keys when full (maxmemory-policy {policy}): counting in this "
            "process until it does not; CONFIG SET maxmemory-policy noeviction, or give the limiter a Redis "
            "without maxmemory"
        )
        self.policy = policy


class SharedStore:
    """The `limits` library's async Redis storage, shared by every replica, made inside the serving loop on
    first use (an app may be built in one thread and served from another). redis-py's asyncio client, so a
    slow Redis never blocks the event loop; every call is also bounded by `timeout` (a connect that never
    completes included). `verify` refuses a store that may evict the counters (`EvictingStore`)."""

    def __init__(self, url: str, timeout: float = 0.25) -> None:
        self.url, self.timeout = url, timeout
        self._limiter = self._make()  # here, not on the event loop: the first one imports for a second
        self._loop: asyncio.AbstractEventLoop | None = None
        self.verified_at = -math.inf

    def _make(self) -> SlidingWindowCounterRateLimiter:
        storage = RedisStorage(
            "async+" + self.url,
            implementation="redispy",
            key_prefix="crosscart:rl",
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
        )
        return SlidingWindowCounterRateLimiter(storage)

    def limiter(self) -> SlidingWindowCounterRateLimiter:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # redis-py's connections belong to the loop that opened them
            if self._loop is not None:
                self._limiter = self._make()
            self._loop = loop
        return self._limiter

    async def ping(self) -> None:
        """The breaker's probe: `verify`, then count a hit on a key of its own. A Redis that refuses
        writes (a read-only replica after a failover, or full under `noeviction`) answers PING and CONFIG
        but not the counters: the probe passed, so the breaker closed every `retry_seconds`, the next
        request failed and opened it again (two warnings per interval and per replica, `/ready` saying
        `"redis": "up"` most of the time while every replica counted alone)."""
        async with asyncio.timeout(self.timeout):
            await self.verify()
            await self.limiter().hit(PROBE_ITEM, "breaker-probe")

    def verify_due(self) -> bool:
        """Whether this request reads the eviction policy again (STORE_VERIFY_SECONDS passed), claiming
        the read: the requests arriving while it runs do not read it too (on the first use, every
        request of a burst did, each paying the round trips)."""
        now = time.monotonic()
        if now - self.verified_at <= STORE_VERIFY_SECONDS:
            return False
        self.verified_at = now
        return True

    async def verify(self) -> None:
        """PING, then read the eviction policy (at most every STORE_VERIFY_SECONDS while it passes). A
        Redis that hides CONFIG (a managed one) passes: `crosscart doctor` says it cannot tell."""
        storage = self.limiter().storage
        if not await storage.check():
            raise ConnectionError("rate-limit store did not answer PING")
        try:
            config = await storage.bridge.get_connection().config_get("maxmemory*")
        except ResponseError:  # CONFIG renamed away or not granted: the policy cannot be seen from here
            config = {}
        policy = config.get("maxmemory-policy", "noeviction")
        if int(config.get("maxmemory", 0) or 0) and policy != "noeviction":
            raise EvictingStore(policy)
        self.verified_at = time.monotonic()


class CircuitBreaker:
    """Closed: calls go to the shared store. The first failure opens it: callers fall back at once, and a
    background task (never a request) retries the store every `retry_seconds` until it answers.

    Hand-written rather than a library's: the breakers on PyPI (pybreaker, aiobreaker, purgatory) retry by
    letting a live call through half-open, which is exactly the wait a request must not pay here."""

    def __init__(self, name: str, probe, retry_seconds: float = 5.0):
        self.name, self._probe, self.retry_seconds = name, probe, retry_seconds
        self.open_since: float | None = None
        self.error: BaseException | None = None  # what opened it
        self.trips = 0
        self._task: asyncio.Task | None = None

    @property
    def closed(self) -> bool:
        return self.open_since is None

    def trip(self, error: BaseException) -> None:
        if self.open_since is not None:
            return
        self.open_since, self.error = time.monotonic(), error
        self.trips += 1
        if isinstance(error, EvictingStore):
            log.warning("%s: %s", self.name, error)
        else:
            why = type(error).__name__
            log.warning("%s unavailable (%s), falling back to local counting", self.name, why)
        self._task = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        while self.open_since is not None:
            await asyncio.sleep(self.retry_seconds)
            try:
                await self._probe()
            except Exception as exc:  # still down, or down another way (evicting, then unreachable)
                self.error = exc
                continue
            log.warning("%s back after %.1f s", self.name, time.monotonic() - self.open_since)
            self.open_since = self.error = None

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass(frozen=True)
class RateDecision:
    """One counted request: allowed or not, and what the RateLimit headers say about the caller's quota."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until a request is allowed again (429) or the quota is back in full
    policy: str  # "per-key", "per-address", "events-per-key" or "merchant-applications"
    window: int = WINDOW_SECONDS

    def headers(self) -> dict[str, str]:
        """`RateLimit-Policy` and `RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers, structured fields:
        quota `q` per window `w` seconds; remaining `r`, reset `t` seconds), plus `Retry-After` on 429."""
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset)
        return headers


class RateLimiter:
    """Per-principal requests per minute, a sliding window counter from the maintained `limits` library.
    Roles in `unthrottled` (the storefront by default) pass freely.

    With Redis slow or down, or evicting keys when full, the limiter counts in-process (behind a circuit
    breaker) rather than refusing traffic, letting it through uncounted, or making requests wait for Redis.
    Counted in-process (so too without Redis), a replica admits its share of a limit, `max(1, limit //
    replicas)`: each admitted the whole limit, so `replicas` replicas behind a balancer admitted that many
    times the limit while Redis was down (3 replicas at 10 a minute: 30).
    """

    def __init__(
        self,
        per_minute: int,
        anonymous_per_minute: int,
        redis_url: str = "",
        unthrottled: tuple[str, ...] = ("storefront",),
        redis_timeout: float = 0.25,
        retry_seconds: float = 5.0,
        replicas: int = 1,
        events_per_minute: int | None = None,
        applications_per_hour: int | None = None,
    ) -> None:
        self.per_minute, self.anonymous_per_minute = per_minute, anonymous_per_minute
        self.events_per_minute = events_per_minute
        self.unthrottled = unthrottled
        amounts = {per_minute, anonymous_per_minute} | ({events_per_minute} if events_per_minute else set())
        # (the shared store's item, this process's share of it) per quota
        self._items = {
            n: (RateLimitItemPerMinute(n), RateLimitItemPerMinute(max(1, n // replicas))) for n in amounts
        }
        self._applications = None
        if hourly := applications_per_hour:
            share = RateLimitItemPerHour(max(1, hourly // replicas))
            self._applications = (RateLimitItemPerHour(hourly), share)
        self._local: SlidingWindowCounterRateLimiter | None = None
        self._local_loop: asyncio.AbstractEventLoop | None = None
        self._shared = SharedStore(redis_url, redis_timeout) if redis_url else None
        self.breaker = CircuitBreaker(
            "rate-limit store", self._shared.ping if self._shared else None, retry_seconds
        )
        self._store_checked_at = -math.inf

    @property
    def shared_store(self) -> str:
        """`up`, `unavailable` (counting locally until it answers again), `evicting` (counting locally
        until its policy is `noeviction`) or `not configured`."""
        if self._shared is None:
            return "not configured"
        if self.breaker.closed:
            return "up"
        return "evicting" if isinstance(self.breaker.error, EvictingStore) else "unavailable"

    async def check_store(self, every: float = 1.0) -> str:
        """`shared_store`, the closed breaker's store probed first (at most every `every` seconds, within
        its timeout; a failure opens the breaker). Only a counted call opened it: with no throttled call
        yet, `/ready` said `"redis": "up"` while Redis was frozen."""
        now = time.monotonic()
        if self._shared is not None and self.breaker.closed and now - self._store_checked_at >= every:
            self._store_checked_at = now
            try:
                await self._shared.ping()
            except Exception as exc:  # down, frozen or evicting, as in `_count`
                self.breaker.trip(exc)
        return self.shared_store

    def limit_for(self, principal: Principal) -> int | None:
        if principal.role in self.unthrottled:
            return None
        return self.anonymous_per_minute if principal.role == ANONYMOUS else self.per_minute

    def _local_limiter(self) -> SlidingWindowCounterRateLimiter:
        loop = asyncio.get_running_loop()  # limits' memory storage runs its expiry task on this loop
        if self._local is None or self._local_loop is not loop:
            self._local_loop, self._local = loop, SlidingWindowCounterRateLimiter(MemoryStorage())
        return self._local

    async def check(self, principal: Principal) -> RateDecision | None:
        """Count one request of `principal`; None for an unthrottled role."""
        limit = self.limit_for(principal)
        if limit is None:
            return None
        policy = "per-address" if principal.role == ANONYMOUS else "per-key"
        return await self._count(self._items[limit], principal.rate_key, policy)

    async def check_events(self, principal: Principal, count: int) -> RateDecision | None:
        """Count `count` recorded events of `principal` against its event quota, all or none (a batch is
        recorded whole or refused); None for an unthrottled role or without a quota. The request quota
        alone let a throttled key record 1,000 events per request, 600,000 rows a minute."""
        if not self.events_per_minute or self.limit_for(principal) is None:
            return None
        key = f"events:{principal.rate_key}"
        return await self._count(self._items[self.events_per_minute], key, "events-per-key", count)

    async def events_left(self, principal: Principal) -> RateDecision | None:
        """The event quota as it stands, nothing counted: refused when not one event is left, so that a
        batch can be refused before its body is read (serving.idempotency); None as `check_events`."""
        return await self.check_events(principal, 0)

    async def check_application(self, principal: Principal) -> RateDecision | None:
        """Count one merchant application of `principal` (an anonymous caller by its address) against the
        hourly quota; None for an unthrottled role or without one. The request quota alone let one address
        file 86,400 applications a day, each one holding a licence number (`duplicate_licence`) for good."""
        if self._applications is None or self.limit_for(principal) is None:
            return None
        key = f"applications:{principal.rate_key}"
        return await self._count(self._applications, key, "merchant-applications")

    async def _count(self, items: tuple, key: str, policy: str, cost: int = 1) -> RateDecision:
        """In the shared store while it answers, else in this process (a replica's share of the quota)."""
        if self._shared is not None and self.breaker.closed:
            try:
                async with asyncio.timeout(self._shared.timeout):  # both round trips together
                    if self._shared.verify_due():
                        await self._shared.verify()  # one request a minute pays two more round trips
                    return await self._decide(self._shared.limiter(), items[0], key, policy, cost)
            except Exception as exc:  # Redis down, frozen or evicting: count locally until it is not
                self.breaker.trip(exc)
        return await self._decide(self._local_limiter(), items[1], key, policy, cost)

    @staticmethod
    async def _decide(limiter, item, key: str, policy: str, cost: int) -> RateDecision:
        """Count `cost` units, all or none; a cost of 0 only reads the quota (allowed while one is left)."""
        allowed = await limiter.hit(item, key, cost=cost) if cost else None
        stats = await limiter.get_window_stats(item, key)
        if allowed is None:
            allowed = stats.remaining > 0
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(allowed, item.amount, stats.remaining, reset, policy, item.get_expiry())

    def stop(self) -> None:
        self.breaker.stop()
