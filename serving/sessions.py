"""Live session state and session-based pages: the recent items of each visit, and what they suggest.

State: per (writer's API key id, session id) the newest `max_items` clicks, in Redis when configured
(one sorted set per session, scored by event time; member = event id + product, so a re-sent event is a
no-op) or in this process otherwise. A session expires `ttl_seconds` after its last write. Keys embed
the writer's key id and a hash of the session id: another key never reads it, and nothing lists them.
Session ids must look like random tokens (16-64 URL-safe characters), so they cannot be guessed.
A shopper key keeps only its SHOPPER_LIVE_SESSIONS most recently written sessions: inventing session
ids cannot fill the store (a 20 s flood left 19,000 Redis keys; now 9). One event batch is one Redis
round trip, however many sessions it touches.
If Redis fails, state is kept in process (like the rate limiter) rather than dropped.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
SESSION_ID = re.compile(SESSION_ID_PATTERN)
TRACKED_EVENTS = frozenset({"view", "cart", "favorite"})  # the product events a client may post (EventIn)
_SEP = "\x1f"  # between event id and product id in a stored member
#: A shopper key's live sessions: one shopper has a few visits at once, not thousands.
SHOPPER_LIVE_SESSIONS = 8


@dataclass(frozen=True)
class Click:
    event_id: str
    ts: float  # Unix seconds
    product_id: str


def session_key(owner: int, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    return f"crosscart:session:{owner}:{digest}"


def index_key(owner: int) -> str:
    """A capped key's sessions (their keys), scored by last write: who is evicted next."""
    return f"crosscart:sessions:{owner}"


def live_session_limit(role: str) -> int | None:
    """How many live sessions a key of `role` keeps: a shopper key SHOPPER_LIVE_SESSIONS; a storefront's
    server-side key tracks every visitor of the shop, bounded by the session TTL only."""
    return SHOPPER_LIVE_SESSIONS if role == "shopper" else None


def newest_sessions(sessions: Mapping[str, Sequence[Click]], limit: int | None) -> dict[str, Sequence[Click]]:
    """The `limit` sessions with the newest clicks (ties: later in `sessions`): a batch's others would be
    evicted at once, so they are never written."""
    if limit is None or len(sessions) <= limit:
        return dict(sessions)
    order = sorted(enumerate(sessions.items()), key=lambda ic: (max(c.ts for c in ic[1][1]), ic[0]))
    return dict(item for _, item in order[-limit:])


class MemorySessions:
    """Sessions in this process, least recently written evicted beyond `max_sessions`; a capped key's
    oldest beyond its limit too (as in Redis)."""

    def __init__(self, max_items: int, ttl_seconds: float, max_sessions: int = 200_000, clock=time.monotonic):
        self.max_items, self.ttl, self.max_sessions, self.clock = max_items, ttl_seconds, max_sessions, clock
        self._data: OrderedDict[str, tuple[dict[str, float], float]] = OrderedDict()
        self._owned: dict[int, OrderedDict[str, None]] = {}  # a capped key's sessions, last written last
        self._lock = threading.Lock()

    def add(self, owner: int, sessions: Mapping[str, Sequence[Click]], limit: int | None = None) -> None:
        """Add each session's clicks (session key -> clicks, oldest session first); then keep only
        `owner`'s `limit` most recently written sessions."""
        now = self.clock()
        with self._lock:
            for key, clicks in sessions.items():
                members, expires = self._data.pop(key, ({}, now))
                if expires < now:
                    members = {}
                for click in clicks:
                    members[f"{click.event_id}{_SEP}{click.product_id}"] = click.ts
                if len(members) > self.max_items:
                    members = dict(sorted(members.items(), key=lambda kv: (kv[1], kv[0]))[-self.max_items :])
                self._data[key] = (members, now + self.ttl)
            if limit is not None:
                owned = self._owned.setdefault(owner, OrderedDict())
                for key in sessions:
                    owned.pop(key, None)
                    owned[key] = None
                while len(owned) > limit:
                    self._data.pop(owned.popitem(last=False)[0], None)
            while len(self._data) > self.max_sessions:
                self._data.popitem(last=False)

    def members(self, key: str) -> dict[str, float]:
        """The session's stored members and their times ({} if unknown or expired)."""
        with self._lock:
            found = self._data.get(key)
            if found is None or found[1] < self.clock():
                return {}
            return dict(found[0])

    def items(self, key: str) -> list[str]:
        return products(self.members(key), self.max_items)


def products(members: Mapping[str, float], max_items: int) -> list[str]:
    """The products of the newest `max_items` members, oldest first (ties: by member, as Redis orders)."""
    ordered = sorted(members.items(), key=lambda kv: (kv[1], kv[0]))[-max_items:]
    return [member.partition(_SEP)[2] for member, _ in ordered]


# Delete the index's oldest sessions beyond ARGV[1] (the index holds at most ARGV[1] + one batch).
_EVICT = """
local old = redis.call('ZRANGE', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
if #old > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #old - 1)
  redis.call('DEL', unpack(old))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return #old
"""


class RedisSessions:
    """Sessions in Redis, shared by every replica: one round trip per event batch and per read.

    Writes come from the events endpoint (a worker thread); reads come from the event loop and use the
    asyncio client, so waiting on Redis never stalls other requests (a client per event loop)."""

    def __init__(self, url: str, max_items: int, ttl_seconds: float):
        import redis

        self.url, self.max_items, self.ttl = url, max_items, int(ttl_seconds)
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._async: tuple[object, Any] | None = None  # (event loop, client)

    def add(self, owner: int, sessions: Mapping[str, Sequence[Click]], limit: int | None = None) -> None:
        """MemorySessions.add in one MULTI/EXEC round trip (one per session took 0.65-1.5 s for a
        1,000-visit batch on a loaded host, this 0.11-0.20 s). Beyond `limit`, the owner's oldest
        sessions are deleted by a script in the same transaction, so the index and the sessions never
        disagree (the script deletes keys it reads from the index: a single Redis, not a cluster)."""
        pipe = self._redis.pipeline()
        for key, clicks in sessions.items():
            pipe.zadd(key, {f"{c.event_id}{_SEP}{c.product_id}": c.ts for c in clicks})
            pipe.zremrangebyrank(key, 0, -(self.max_items + 1))
            pipe.expire(key, self.ttl)
        if limit is not None and sessions:
            now = time.time_ns() // 1000  # microseconds, + position: a batch's sessions keep their order
            index = index_key(owner)
            pipe.zadd(index, {key: now + i for i, key in enumerate(sessions)})
            pipe.eval(_EVICT, 1, index, limit, self.ttl)
        pipe.execute()

    async def members(self, key: str) -> dict[str, float]:
        import asyncio

        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = redis.asyncio.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._async = (loop, client)
        return {m.decode(): ts for m, ts in await self._async[1].zrange(key, 0, -1, withscores=True)}


STORE_RETRY_SECONDS = (
    5.0  # after a Redis failure, sessions stay in process this long before it is asked again
)


class SessionState:
    """The service's session store: Redis when `redis_url` is set, else memory. After a Redis failure,
    memory for STORE_RETRY_SECONDS without asking Redis (a frozen Redis made every event write and
    session page wait its timeout and log a warning), the outage logged once; then the next call tries
    Redis again (one timeout per STORE_RETRY_SECONDS at most while it stays down). A Redis that answers
    but refuses writes (a read-only replica, full under `noeviction`) keeps serving reads meanwhile, and
    only a write it takes ends that refusal: a read did, logging "back", the next write "unavailable"
    again. A read merges what memory holds for the session (written while Redis failed) with Redis'
    clicks: it read Redis alone once Redis answered, the visit's newest clicks missing."""

    def __init__(self, max_items: int = 30, ttl_seconds: float = 1800.0, redis_url: str = ""):
        self.memory = MemorySessions(max_items, ttl_seconds)
        self.shared = RedisSessions(redis_url, max_items, ttl_seconds) if redis_url else None
        self.ranker = SessionRanker()
        self._retry_at: float | None = None  # Redis failed: memory only until then
        self._write_retry_at: float | None = None  # Redis refused a write: writes to memory until then
        self._lock = threading.Lock()

    def _redis(self, write: bool) -> RedisSessions | None:
        """Redis, unless it failed (for a write: or refused one) less than STORE_RETRY_SECONDS ago."""
        now = time.monotonic()
        waits = (self._retry_at, self._write_retry_at if write else None)
        if self.shared is None or any(until is not None and now < until for until in waits):
            return None
        return self.shared

    def _failed(self, error: BaseException, write: bool) -> None:
        from redis import ResponseError  # READONLY, OOM: Redis answered, refusing the write

        refused = write and isinstance(error, ResponseError)
        with self._lock:
            if self._retry_at is None and self._write_retry_at is None:
                log.warning("session store unavailable, keeping sessions in process: %s", error)
            until = time.monotonic() + STORE_RETRY_SECONDS
            if refused:
                self._write_retry_at = until
            else:
                self._retry_at = until

    def _answered(self, write: bool) -> None:
        """Redis took a write, or answered a read: a read ends an outage, not a refusal of writes."""
        if self._retry_at is None and (not write or self._write_retry_at is None):
            return  # the common case: no lock
        with self._lock:
            failing = self._retry_at is not None or self._write_retry_at is not None
            self._retry_at = None
            if write:
                self._write_retry_at = None
            if failing and self._write_retry_at is None:
                log.warning("session store back")

    def record(
        self,
        owner: int,
        sessions: Mapping[str, Sequence[Click]],
        limit: int | None = None,
        later: Callable[[Callable[[], None]], None] | None = None,
    ) -> int:
        """Add each session's clicks (session id -> clicks) for `owner`, keeping its `limit` newest
        sessions (live_session_limit); the number of clicks stored. Ids that are not valid tokens are
        not stored. With `later`, the store is handed to it to run (serving.deps.after_commit) instead
        of now."""
        valid = {
            session_key(owner, sid): clicks
            for sid, clicks in sessions.items()
            if clicks and SESSION_ID.match(sid)
        }
        kept = newest_sessions(valid, limit)
        if kept:
            store = partial(self._store, owner, kept, limit)
            store() if later is None else later(store)
        return sum(len(clicks) for clicks in kept.values())

    def _store(self, owner: int, sessions: Mapping[str, Sequence[Click]], limit: int | None) -> None:
        shared = self._redis(write=True)
        if shared is not None:
            try:
                shared.add(owner, sessions, limit)
            except (
                Exception
            ) as exc:  # Redis down or refusing: keep the visits in process rather than lose them
                self._failed(exc, write=True)
            else:
                self._answered(write=True)
                return
        self.memory.add(owner, sessions, limit)

    async def items(self, owner: int, session_id: str) -> list[str]:
        """The session's products, oldest first (repeats kept); empty if unknown, expired or not owned."""
        key = session_key(owner, session_id)
        members = self.memory.members(key)
        shared = self._redis(write=False)
        if shared is not None:
            try:
                members = {**await shared.members(key), **members}
            except Exception as exc:
                self._failed(exc, write=False)
            else:
                self._answered(write=False)
        return products(members, self.memory.max_items)


def clicks_by_session(events: Iterable[Any]) -> dict[str, list[Click]]:
    """The behavioural events with a product and a session id, grouped by session id."""
    out: dict[str, list[Click]] = {}
    for e in events:
        if e.session_id and e.product_id and e.event_type in TRACKED_EVENTS:
            out.setdefault(e.session_id, []).append(Click(e.event_id, e.ts.timestamp(), e.product_id))
    return out


def load_session_version(tracking_uri: str, name: str, version: str):
    """A registered session model, loaded from its artifact (training.registry)."""
    from models.sessions import load_session_model
    from training.registry import load_recommender_version

    return load_recommender_version(tracking_uri, name, version, load=load_session_model)


class SessionRanker:
    """A session model's top items as catalog positions. Model item codes map to catalog positions through
    one array built per (model, catalog) pair, so a request never looks ids up one by one."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._map: np.ndarray | None = None

    def candidates(self, catalog, model, items: Sequence[str], pool: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's top `pool` for a session's `items` as (catalog positions, scores), best first;
        items the catalog lacks are dropped. Empty without a model or items."""
        if model is None or not items:
            return np.empty(0, dtype=np.intp), np.empty(0)
        key = (id(model), id(catalog), catalog.built_at)
        mapping = self._map
        if self._key != key or mapping is None:
            mapping = catalog.positions(np.asarray(model.item_ids_, dtype=object))
            self._key, self._map = key, mapping
        codes, scores = model.rank_codes(model.codes(items), pool)
        positions = mapping[codes]
        keep = positions >= 0
        return positions[keep], scores[keep]


def blend(
    session: tuple[np.ndarray, np.ndarray], long_term: np.ndarray, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank the session model's candidates by (1 - weight) x session score / its best + weight x the
    long-term score min-max scaled over the candidates; best first (ties: lower position).

    The visit says what the shopper wants now, the long-term model which of those items suit them: on
    the synthetic marketplace this beats adding long-term items to the list (bench/sessions.py)."""
    positions, scores = session
    if len(positions) == 0:
        return positions, np.empty(0)
    part = np.asarray(scores, dtype=np.float64) / float(np.max(scores))
    spread = float(long_term.max() - long_term.min()) if len(long_term) else 0.0
    taste = (long_term - long_term.min()) / spread if spread > 0 else np.zeros(len(positions))
    combined = (1.0 - weight) * part + weight * taste
    order = np.lexsort((positions, -combined))
    return positions[order], combined[order]


def long_term_scores(model, shopper_id: str, positions: np.ndarray, catalog, pool: int) -> np.ndarray:
    """The long-term model's score of each catalog position in `positions` for this shopper: from its whole
    row when it scores rows (`user_scores`), else from its top `pool` (0 outside it)."""
    if model.recommender is None or len(positions) == 0:
        return np.zeros(len(positions))
    mapping = model.item_positions(catalog)
    row = model.recommender.user_scores(shopper_id) if mapping is not None else None
    if row is not None:
        inverse = np.full(len(catalog.product_ids), -1, dtype=np.int64)
        known = mapping >= 0
        inverse[mapping[known]] = np.flatnonzero(known)
        cols = inverse[positions]
        return np.where(cols >= 0, row[np.maximum(cols, 0)], 0.0).astype(np.float64)
    top, scores = model.top_positions(shopper_id, pool, catalog)
    lookup = dict(zip(top.tolist(), scores.tolist(), strict=True))
    return np.array([lookup.get(p, 0.0) for p in positions.tolist()], dtype=np.float64)
