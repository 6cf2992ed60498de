"""Search as the API serves it: retrieval from the full-text index, organic ranking (BM25 with brand and
category boosts, or the learned ranker when one is loaded), and the sponsored-results auction.

The index is kept current two ways: a write through this replica's API re-indexes the products it touched
right after the transaction commits (searchable or gone well within a second), and a periodic reconcile
(every catalog refresh) picks up writes made elsewhere. Sponsored results carry signed impression tokens;
impressions are written in batches off the request path.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import joblib
import numpy as np
from cachetools import LRUCache
from sqlalchemy.orm import Session, sessionmaker

from commerce.ads import AdClick, AdImpression
from commerce.db import is_sqlite_damaged, read_only, transaction
from commerce.search.documents import load_documents, refresh_products
from commerce.search.index import Filters, Hit, MatchQuery, SearchIndex, open_index, restrict, sync
from commerce.search.query import ParsedQuery, QueryParser, Vocabulary
from commerce.services import ads
from commerce.services.auction import AdCandidate, AdWin, pacing_probability, run_auction
from features.search_features import EMPTY_PROFILE, ShopperProfile, search_features
from serving.batch_writer import Backlog, PeriodicFlush
from serving.catalog import CatalogSnapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

BM25_VERSION = "bm25"


@dataclass(frozen=True)
class SearchConfig:
    token_secret: str
    slots: int = 2
    slot_positions: tuple[int, ...] = (1, 6)  # where sponsored results sit in the first page (1-based)
    reserve: Decimal = Decimal("0.30")
    relevance_floor: float = 0.3  # ad's text score over the best organic score
    candidates: int = 100  # matches retrieved, then ranked
    # How long a cached index lookup may serve when other replicas write the same index (PostgreSQL):
    # a per-replica index (memory, FTS5) changes only through this replica's reconcile and writes,
    # which clear the cache, so its entries serve until then.
    cache_seconds: float = 30.0
    cache_bytes: int = 64 * 2**20  # estimated size of the cached lookups; least recently used go first
    ctr_prior: float = 0.02  # predicted click rate of an ad without history
    ctr_prior_weight: float = 200.0  # impressions the prior is worth
    ranker_path: str | None = None

    def __post_init__(self) -> None:
        if len(self.slot_positions) < self.slots:
            raise ValueError("every sponsored slot needs a position")


CTR_WINDOW = timedelta(days=30)


@dataclass
class ClickRateCounts:
    """A replica's counts behind the ads' click rates (`AdsSnapshot.ctr`), kept from one refresh to the
    next so that each counts only the days that may still change (`ads.RollingViewerDays`)."""

    impressions: ads.RollingViewerDays = field(
        default_factory=lambda: ads.RollingViewerDays(AdImpression, AdImpression.shown_at)
    )
    clicks: ads.RollingViewerDays = field(  # `_quality`'s clicks
        default_factory=lambda: ads.RollingViewerDays(AdClick, AdClick.clicked_at)
    )


@dataclass(frozen=True)
class AdsSnapshot:
    ads: list[ads.LiveAd]
    ctr: dict[tuple[str, str], tuple[int, int]]  # (campaign, product) -> (clicks, impressions), 30 days
    day: str
    # how far this replica's clock ran ahead of the database server's at the load: pacing runs on the
    # server's day and hour, the one clicks are billed to (`ads.charge_click`)
    ahead: timedelta = timedelta(0)
    by_word: dict[str, list[ads.LiveAd]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Every match type needs the keyword's first word in the query: only those ads are checked.
        by_word: dict[str, list[ads.LiveAd]] = {}
        for ad in self.ads:
            by_word.setdefault(ad.keyword[0], []).append(ad)
        object.__setattr__(self, "by_word", by_word)

    def matching(self, words: tuple[str, ...]) -> list[ads.LiveAd]:
        seen = {ad.keyword_id: ad for w in set(words) for ad in self.by_word.get(w, ())}
        return [ad for _, ad in sorted(seen.items()) if ads.keyword_matches(ad.keyword, ad.match_type, words)]

    @classmethod
    def load(cls, session: Session, now: datetime, counts: ClickRateCounts | None = None) -> AdsSnapshot:
        """Live ads and their click rates at `now`; `counts` are the replica's from its last load (none:
        every day counted). Takes `ads.REFRESH_WORK_MEM` for the rest of `session`'s transaction."""
        counts = counts or ClickRateCounts()
        ads.use_refresh_work_mem(session)
        at = ads.billing_clock(session, now)
        since = now - CTR_WINDOW
        imps = counts.impressions.count(session, since, at)
        clicks = counts.clicks.count(session, since, at)
        ctr = {ad: (clicks.get(ad, 0), n) for ad, n in imps.items()}
        return cls(ads.live_ads(session, at), ctr, ads.day_key(at), now - at)


def _best_keyword_per_campaign(matched: list[ads.LiveAd]) -> list[ads.LiveAd]:
    """Each campaign's matching keyword with the highest bid (the lowest keyword id among equal bids), in
    keyword id order: a campaign's keywords share its products, budget and click rate, so no other can
    win a product's auction entry (`run_auction`: best score, then bid, first seen). Every matching
    keyword entered the auction once per product: one campaign of 500 keywords over 3 products made a
    search 1,500 entries, each scored in exact fractions."""
    best: dict[str, ads.LiveAd] = {}
    for ad in matched:  # in keyword id order (`AdsSnapshot.matching`)
        held = best.get(ad.campaign_id)
        if held is None or ad.bid > held.bid:
            best[ad.campaign_id] = ad
    return sorted(best.values(), key=lambda ad: ad.keyword_id)


@dataclass
class SponsoredResult:
    hit: Hit
    win: AdWin
    position: int
    token: str


@dataclass
class SearchResult:
    parsed: ParsedQuery
    items: list[tuple[Hit, float]]  # (hit, ranking score) for the page
    total: int
    sponsored: list[SponsoredResult] = field(default_factory=list)
    model_version: str = BM25_VERSION


class ImpressionLog(PeriodicFlush):
    """Shown sponsored results, queued by the request path and written in batches (idempotent inserts);
    at most `max_pending` wait while the database is down (a `Backlog`)."""

    thread_name = "ad-impressions"

    def __init__(
        self, session_factory: sessionmaker[Session], every_seconds: float = 1.0, max_pending=200_000
    ):
        super().__init__(every_seconds)
        self.session_factory = session_factory
        self.backlog = Backlog("ad impressions", max_pending)

    @property
    def backlogs(self) -> tuple[Backlog, ...]:
        return (self.backlog,)

    def note(self, claim: ads.ImpressionClaim, at: datetime) -> None:
        self.backlog.put((claim, at))

    def flush(self) -> int:
        with self._flush_lock:
            pending = self.backlog.drain()
            if not pending:
                return 0
            try:
                with self.session_factory() as session:
                    ads.record_impressions(session, pending)
                    session.commit()
            except Exception as exc:  # database away: keep the batch for the next flush
                log.warning("writing %d ad impressions failed, will retry: %s", len(pending), exc)
                return 0
            written = len(pending)
            self.backlog.stored()
            return written


def load_ranker(path: str | None):
    """A fitted models.search.ranker.SearchRanker saved with joblib, or None (BM25 ordering)."""
    if not path:
        return None
    try:
        return joblib.load(path)
    except FileNotFoundError:
        log.warning("search ranker %s not found: ranking by BM25", path)
        return None
    except Exception as exc:  # truncated or corrupt: the API refused to start, naming no file
        reason = f"{type(exc).__name__}: {exc}"
        log.error("search ranker %s cannot be loaded (%s): ranking by BM25", path, reason)
        return None


def entry_bytes(key: tuple, hits: list[Hit], *, documents: bool) -> int:
    """Estimated bytes a cached lookup holds: its key's terms, the hit list, each hit with its score and
    per-field scores, and its document when the index built it for this lookup (`documents`; the memory
    index's hits point at documents it keeps anyway). Measured per entry by RSS with 100 hits: ~11 KB
    (memory index), ~46 KB (with per-field scores), ~130 KB (FTS5 or PostgreSQL: documents parsed per
    hit), so a count bound meant 0.2 to 2.6 GB per worker. Up to three hits are sized and the rest
    assumed alike: sizing all of them would cost more than some lookups."""
    query = key[0]
    size = _ENTRY_OVERHEAD + sum(sys.getsizeof(t) for group in query.groups for t in group)
    size += sys.getsizeof(hits)
    if not hits:
        return size
    sample = hits[:: max(1, len(hits) // 3)][:3]
    per_hit = sum(_hit_bytes(h, documents) for h in sample) / len(sample)
    return size + round(per_hit * len(hits))


_ENTRY_OVERHEAD = 600  # key and value tuples, the query and filter objects, the LRU's own bookkeeping


def _hit_bytes(hit: Hit, documents: bool) -> int:
    size = sys.getsizeof(hit) + sys.getsizeof(hit.score)
    if hit.field_scores:
        size += sys.getsizeof(hit.field_scores) + sum(map(sys.getsizeof, hit.field_scores.values()))
    if documents:
        doc = hit.document
        size += sys.getsizeof(doc) + sys.getsizeof(doc.__dict__) + sys.getsizeof(hit.product_id)
        for value in doc.__dict__.values():
            size += sys.getsizeof(value)
            if isinstance(value, tuple):
                size += sum(map(sys.getsizeof, value))
    return size


_Entry = tuple[float, list[Hit], int]  # when stored, the hits, their estimated bytes


def _entry_size(entry: _Entry) -> int:
    return entry[2]


class LookupCache:
    """A segmented LRU of index lookups bounded by their estimated bytes (`entry_bytes`): a new entry
    waits in a small probation segment (a tenth of the bytes) and moves to the protected rest when it
    is asked for again. Anyone may search, so a client sending one-off queries would otherwise push
    every head query out of a plain LRU; here it only churns probation, and the queries traffic repeats
    stay. A bound in entries would not bound memory: an entry's size varies twelvefold with the
    backend and the ranker. Callers hold the lock."""

    def __init__(self, max_bytes: int, size: Callable[[tuple, list[Hit]], int]) -> None:
        probation = max(1, max_bytes // 10)
        self._size = size
        self._probation: LRUCache[tuple, _Entry] = LRUCache(probation, getsizeof=_entry_size)
        protected = max(1, max_bytes - probation)
        self._protected: LRUCache[tuple, _Entry] = LRUCache(protected, getsizeof=_entry_size)

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    @property
    def bytes(self) -> int:
        return int(self._probation.currsize + self._protected.currsize)

    def get(self, key: tuple) -> tuple[float, list[Hit]] | None:
        found = self._protected.get(key)
        if found is None and (found := self._probation.pop(key, None)) is not None:
            self._store(self._protected, key, found)  # asked for twice: worth keeping
        return None if found is None else (found[0], found[1])

    def __setitem__(self, key: tuple, value: tuple[float, list[Hit]]) -> None:
        entry = (value[0], value[1], self._size(key, value[1]))
        if key in self._protected:
            self._store(self._protected, key, entry)  # refreshed after expiry: stays protected
        else:
            self._store(self._probation, key, entry)

    @staticmethod
    def _store(segment: LRUCache, key: tuple, entry: _Entry) -> None:
        if entry[2] <= segment.maxsize:  # one lookup bigger than the segment is not kept at all
            segment[key] = entry
        else:
            segment.pop(key, None)

    def clear(self) -> None:
        self._probation.clear()
        self._protected.clear()


class SearchService:
    def __init__(
        self,
        index: SearchIndex,
        session_factory: sessionmaker[Session],
        config: SearchConfig,
        catalog: Callable[[], CatalogSnapshot | None] = lambda: None,
        ranker=None,
    ):
        self.index, self.session_factory, self.config = index, session_factory, config
        self.catalog = catalog
        self.ranker = ranker
        self.parser = QueryParser(Vocabulary((), {}, {}))
        self.ads_snapshot = AdsSnapshot([], {}, "")
        self._click_rate_counts = ClickRateCounts()
        self.impressions = ImpressionLog(session_factory)
        self._local_spend: dict[str, Decimal] = {}  # clicks charged by this replica since the last load
        self._random = random.Random()
        self._cache = LookupCache(
            config.cache_bytes, functools.partial(entry_bytes, documents=not index.hits_share_documents)
        )
        self._cache_lock = threading.Lock()
        self._cache_generation = 0  # clears so far: a lookup that overlapped one is not cached
        self._cache_ttl = config.cache_seconds if index.shared else math.inf
        self._brand_of: dict[str, str] = {}  # product -> brand, for shopper brand affinity
        self._replacing = threading.Lock()

    @property
    def model_version(self) -> str:
        return getattr(self.ranker, "version_", BM25_VERSION) if self.ranker is not None else BM25_VERSION

    # --- keeping current ------------------------------------------------------------------------------

    def _on_index(self, use: Callable[[SearchIndex], T]) -> T:
        """`use(index)`; an index file found damaged on the way is replaced in memory, then `use` runs
        again on that. A file that opened can still hold damaged pages that only some lookups reach
        (every search for one word in six answered 500 with one file); it is derived from the database,
        so search goes on from memory, and the file is left as it is for the operator."""
        index = self.index
        try:
            return use(index)
        except Exception as exc:
            if not (index.shared and is_sqlite_damaged(exc)):
                raise
            self._replace_damaged(index, exc)
        return use(self.index)

    def _replace_damaged(self, damaged: SearchIndex, exc: BaseException) -> None:
        with self._replacing:
            if self.index is not damaged:  # another request replaced it meanwhile
                return
            log.error(
                "search index %s is damaged (%s: %s): indexing in memory until it is fixed",
                getattr(damaged, "path", damaged.backend),
                type(exc).__name__,
                exc,
            )
            memory = open_index("fts5")
            with read_only(self.session_factory) as session:
                docs = list(load_documents(session))
            sync(memory, docs)
            self.index = memory
            self._cache_ttl = math.inf  # only this replica writes it now, and clears the cache when it does
            self.clear_cache()

    def refresh(self, now: datetime | None = None) -> None:
        """Reconcile the index with the database, rebuild the query vocabulary, reload live ads."""
        now = now or datetime.now(UTC)
        changed, docs, ads = self._on_index(functools.partial(self._reconcile, now=now))
        if changed["written"] or changed["removed"]:
            self.clear_cache()
        if changed["written"] or changed["removed"] or not self.parser.vocabulary.latin_terms:
            self.parser = QueryParser(Vocabulary.from_documents(docs))
            self._brand_of = {d.product_id: d.brand for d in docs}
        if isinstance(ads, Exception):
            raise ads  # the index is reconciled; the ads stay as they were and the loop says it failed
        self.ads_snapshot = ads
        self._local_spend = {}

    def _reconcile(self, index: SearchIndex, now: datetime):
        index.ensure()
        # Read before the documents: a product re-indexed after this (a write committed during the
        # refresh, `products_changed` here or on another replica sharing the index) is kept as written.
        before = index.fingerprints()
        with read_only(self.session_factory) as session:
            docs = list(load_documents(session))
            try:
                ads = AdsSnapshot.load(session, now, self._click_rate_counts)
            except Exception as exc:  # the documents read stand: the ads' counts past the statement
                ads = exc  # timeout kept the index from following the catalog for as long as they did
        # The index is written (through its own engine) once the read transaction has ended: a first
        # build of a large catalog, in it, outlasted PostgreSQL's idle-in-transaction timeout (the API's
        # statement timeout), which ended the connection and failed the refresh at its next query.
        return sync(index, docs, before=before), docs, ads

    def refresh_ads(self, now: datetime | None = None) -> None:
        with read_only(self.session_factory) as session:
            self.ads_snapshot = AdsSnapshot.load(session, now or datetime.now(UTC), self._click_rate_counts)
        self._local_spend = {}

    def products_changed(self, *, product_ids: Sequence[str] = (), merchant_id: str | None = None) -> None:
        """Re-index after a committed write (called by the routers as a background task)."""

        def refresh(index: SearchIndex) -> None:
            with read_only(self.session_factory) as session:
                refresh_products(index, session, product_ids=product_ids, merchant_id=merchant_id)

        self._on_index(refresh)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget cached lookups (and the parser's remembered typo corrections)."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_generation += 1
        self.parser.forget_corrections()

    # --- searching ------------------------------------------------------------------------------------

    def _match(self, query: MatchQuery, limit: int, filters: Filters, fields: bool) -> list[Hit]:
        """Index lookups through a bounded LRU cache, keyed on the query alone (shoppers share entries):
        search traffic repeats its head queries. Any change to the index through this replica (its own
        writes, the periodic reconcile) clears the cache at once; on an index other replicas also write,
        entries live at most `cache_seconds` (the reconcile interval). A lookup the cache was cleared
        during is not kept: it may have read the contents from before the change."""
        key = (query, limit, filters, fields)
        now = time.monotonic()
        with self._cache_lock:
            found = self._cache.get(key)
            generation = self._cache_generation
        if found is not None and now - found[0] < self._cache_ttl:
            return found[1]
        hits = self._on_index(lambda index: index.match(query, limit, filters, field_scores=fields))
        with self._cache_lock:
            if generation == self._cache_generation:
                self._cache[key] = (now, hits)
        return hits

    def _retrieve(self, parsed: ParsedQuery, filters: Filters) -> list[Hit]:
        k, fields = self.config.candidates, self.ranker is not None  # per-field scores feed the ranker
        hits = self._match(parsed.match, k, filters, fields)
        if not hits and len(parsed.match.groups) > 1:
            hits = self._match(parsed.relaxed(), k, filters, fields)
        return hits

    def _popularity(self, hits: Sequence[Hit]) -> np.ndarray:
        catalog = self.catalog()
        if catalog is None:
            return np.zeros(len(hits))
        pos = [catalog.index.get(h.product_id, -1) for h in hits]
        pop = catalog.popularity["30d"]
        return np.array([pop[p] if p >= 0 else 0.0 for p in pos])

    def shopper_profile(self, shopper_id: str | None) -> ShopperProfile:
        catalog = self.catalog()
        if shopper_id is None or catalog is None or shopper_id not in catalog.purchased:
            return EMPTY_PROFILE
        positions = catalog.purchased[shopper_id].tolist()
        brand = self._brand_of
        return ShopperProfile.from_purchases(
            (
                catalog.category_ids[p],
                catalog.origins[p],
                float(catalog.prices[p]),
                brand.get(catalog.product_ids[p], ""),
            )
            for p in positions
        )

    def _rank(self, parsed: ParsedQuery, hits: list[Hit], shopper_id: str | None, now: datetime):
        popularity = self._popularity(hits)
        if not parsed.match.groups:  # no words left (e.g. only an origin): most popular first
            scores = popularity
        elif self.ranker is not None:
            X = search_features(
                hits, parsed, popularity=popularity, shopper=self.shopper_profile(shopper_id), now=now
            )
            scores = self.ranker.predict(X)
        else:
            scores = parsed.organic_scores(hits)
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        return [(hits[i], float(scores[i])) for i in order]

    def search(
        self,
        q: str,
        *,
        shopper_id: str | None = None,
        client: str = "",
        filters: Filters = Filters(),
        limit: int = 20,
        offset: int = 0,
        now: datetime | None = None,
    ) -> SearchResult:
        """`client` is the searching client's address: an anonymous search's ad tokens carry a tag of it
        (`ads.client_tag`), so its clicks are billed once per ad and day like a shopper's."""
        now = now or datetime.now(UTC)
        parsed = self.parser.parse(q)
        if parsed.origin is not None and filters.origin is None:
            filters = Filters(
                origin=parsed.origin,
                category_ids=filters.category_ids,
                merchant_id=filters.merchant_id,
                fulfillment=filters.fulfillment,
            )
        hits = self._retrieve(parsed, filters)
        ranked = self._rank(parsed, hits, shopper_id, now)
        result = SearchResult(
            parsed, ranked[offset : offset + limit], len(ranked), model_version=self.model_version
        )
        if offset == 0 and self.config.slots > 0 and parsed.terms:
            viewer = ads.client_tag(self.config.token_secret, client) if shopper_id is None else None
            result.sponsored = self._sponsored(parsed, hits, filters, shopper_id, viewer, now)
        return result

    # --- sponsored results ----------------------------------------------------------------------------

    def _quality(self, campaign_id: str, product_id: str) -> float:
        """The ad's click rate over 30 days, from a prior. Its clicks and its impressions count once per
        shopper (or anonymous client) and day, clicks billed or not (`ads.viewer_days`). Counting every
        click recorded, a merchant's own account searching and clicking its ad in a loop (one click
        billed) raised its rate to 60 of 61 and took the first slot from a competitor bidding twice as
        much; counting billed ones only, an ad's first clicks after its day's budget ran out counted
        nothing, lowering its rate; counting every impression, searching a rival's keyword in a loop
        without clicking sank the rival's rate."""
        clicks, imps = self.ads_snapshot.ctr.get((campaign_id, product_id), (0, 0))
        w = self.config.ctr_prior_weight
        return (clicks + self.config.ctr_prior * w) / (imps + w)

    def _sponsored(
        self,
        parsed: ParsedQuery,
        hits: list[Hit],
        filters: Filters,
        shopper_id: str | None,
        client: str | None,
        now: datetime,
    ) -> list[SponsoredResult]:
        snapshot = self.ads_snapshot
        if not snapshot.ads:
            return []
        matched = snapshot.matching(parsed.terms)
        if not matched:
            return []
        clock = now - snapshot.ahead
        elapsed = (clock - clock.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 86400
        live = []
        for ad in matched:
            spent = ad.spent_today if snapshot.day == ads.day_key(clock) else Decimal("0")
            spent += self._local_spend.get(ad.campaign_id, Decimal("0"))
            if spent + ad.bid > ad.daily_budget:  # cannot pay another click at its bid
                continue
            if self._random.random() < pacing_probability(spent, ad.daily_budget, elapsed):
                live.append(ad)
        if not live:
            return []
        live = _best_keyword_per_campaign(live)
        by_id = {h.product_id: h for h in hits}
        wanted = {p for ad in live for p in ad.product_ids}
        missing = wanted - set(by_id)
        if missing:
            for h in self._match(parsed.match, len(missing), restrict(filters, missing), False):
                by_id[h.product_id] = h
        best = max((h.score for h in hits), default=0.0) or max(
            (h.score for h in by_id.values()), default=0.0
        )
        candidates = [
            AdCandidate(
                campaign_id=ad.campaign_id,
                keyword_id=ad.keyword_id,
                product_id=p,
                bid=ad.bid,
                quality=self._quality(ad.campaign_id, p),
                relevance=(by_id[p].score / best) if p in by_id and best > 0 else 0.0,
            )
            for ad in live
            for p in ad.product_ids
        ]
        wins = run_auction(
            candidates,
            slots=self.config.slots,
            reserve=self.config.reserve,
            relevance_floor=self.config.relevance_floor,
        )
        out = []
        for win in wins:
            claim = ads.new_claim(
                campaign_id=win.candidate.campaign_id,
                keyword_id=win.candidate.keyword_id,
                product_id=win.candidate.product_id,
                slot=win.slot,
                price=win.price,
                shopper_id=shopper_id,
                client=client,
                now=now,
            )
            self.impressions.note(claim, now)
            out.append(
                SponsoredResult(
                    by_id[win.candidate.product_id],
                    win,
                    self.config.slot_positions[win.slot - 1],
                    ads.sign_token(self.config.token_secret, claim),
                )
            )
        return out

    def click(self, claim: ads.ImpressionClaim, *, now: datetime | None = None) -> ads.ClickResult:
        """Charge a click on a verified claim (one transaction); the local spend view is raised at once."""
        with transaction(self.session_factory) as session:
            result = ads.charge_click(session, claim, now)
        if result.charged:
            self._local_spend[claim.campaign_id] = (
                self._local_spend.get(claim.campaign_id, Decimal("0")) + result.price
            )
        return result

    def verify(self, token: str, now: datetime | None = None) -> ads.ImpressionClaim:
        return ads.verify_token(self.config.token_secret, token, now)


class SearchRunner:
    """Runs a SearchService's periodic refresh and its impression writer next to the app's other loops."""

    def __init__(self, service: SearchService, every_seconds: float):
        from serving.refresh import Refreshing

        self.service = service
        self.loop = Refreshing("search", self._refresh, every_seconds)

    def _refresh(self) -> SearchService:
        self.service.refresh()
        return self.service

    def start(self, background: bool) -> None:
        if background:
            self.loop.start()
        else:
            self.loop.refresh()
        self.service.impressions.start()

    def stop(self) -> None:
        self.loop.stop()
        self.service.impressions.stop()


def reindex_after(
    app, background, *, product_ids: Sequence[str] = (), merchant_id: str | None = None
) -> None:
    """Queue re-indexing of products a request changed; runs after its transaction commits."""
    service = getattr(app.state, "search", None)
    if service is not None:
        background.add_task(service.products_changed, product_ids=list(product_ids), merchant_id=merchant_id)
