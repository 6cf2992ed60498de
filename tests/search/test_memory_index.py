"""The in-process index scores exactly as SQLite FTS5 does, through writes and removals, and the search
service's lookup cache is bounded and never serves a lookup the index has changed under."""

from __future__ import annotations

import random

import pytest

from commerce.db import read_only, transaction
from commerce.search.documents import load_documents
from commerce.search.index import Filters, Fts5Index, Hit, MatchQuery, SearchDocument
from commerce.search.memory import MemoryIndex, fold
from commerce.services import catalog
from serving.search import LookupCache, SearchConfig, SearchService, entry_bytes

WORDS = ["cream", "crème", "serum", "face", "night", "gold", "面霜", "精华", "耳机", "运动鞋", "max", "mini"]
BRANDS = ["Karimi", "Sorin", "Velmar", "Lunette"]
PATHS = [("Beauty & Skincare", "Face Cream"), ("Electronics", "Headphones"), ("Fashion", "Sneakers")]


def corpus(rng: random.Random, n: int, start: int = 0) -> list[SearchDocument]:
    return [
        SearchDocument(
            product_id=f"P{i:04d}",
            title=" ".join(rng.choices(WORDS, k=rng.randint(1, 6))),
            brand=rng.choice(BRANDS),
            category_id=f"C{rng.randint(0, 2)}",
            category_path=rng.choice(PATHS),
            origin=rng.choice(["JP", "KR", "FR", "DE"]),
            merchant_id=rng.choice(["M1", "M2"]),
            price="10.00",
            fulfillment=rng.choice(["bonded", "direct_mail"]),
            attributes=("bonded",) if rng.random() < 0.5 else ("direct mail", "self operated"),
        )
        for i in range(start, start + n)
    ]


QUERIES = [
    MatchQuery((("cream",),)),
    MatchQuery((("creme",),)),  # FTS5 folds diacritics: finds crème
    MatchQuery((("cream", "面霜"), ("karimi",))),
    MatchQuery((("cream", "面霜"), ("cream", "面霜"))),  # a term in two groups counts twice
    MatchQuery((("serum",), ("耳机",), ("gold",)), require_all=False),
    MatchQuery((("headphones",), ("jp",))),
    MatchQuery((("nothing",),)),
]
FILTERS = [
    Filters(),
    Filters(origin="JP"),
    Filters(category_ids=frozenset({"C0", "C2"}), fulfillment="bonded"),
    Filters(merchant_id="M2", product_ids=frozenset({"P0001", "P0007", "P0042", "P0100", "nope"})),
    Filters(origin="XX"),
]


def same_results(a: Fts5Index, b: MemoryIndex, limit: int = 15) -> None:
    for query in QUERIES:
        for filters in FILTERS:
            for fields in (False, True):
                want = a.match(query, limit, filters, field_scores=fields)
                got = b.match(query, limit, filters, field_scores=fields)
                assert [h.product_id for h in got] == [h.product_id for h in want], (query, filters)
                for x, y in zip(got, want, strict=True):
                    assert x.score == pytest.approx(y.score, rel=1e-12, abs=1e-12)
                    assert x.document == y.document
                    for name, value in y.field_scores.items():
                        assert x.field_scores[name] == pytest.approx(value, rel=1e-12, abs=1e-12)


def test_scores_equal_fts5_through_writes_and_removals():
    rng = random.Random(7)
    fts, memory = Fts5Index(), MemoryIndex()
    docs = corpus(rng, 300)
    for index in (fts, memory):
        index.upsert(docs)
    same_results(fts, memory)
    changed = corpus(random.Random(8), 60, start=200) + corpus(rng, 40, start=300)  # 60 rewritten, 40 new
    gone = [f"P{i:04d}" for i in rng.sample(range(200), 50)]
    for index in (fts, memory):
        index.upsert(changed)
        index.remove(gone + ["never-indexed"])
    same_results(fts, memory)  # document count, lengths and term frequencies kept exact
    assert memory.count() == fts.count() == 290
    assert memory.fingerprints() == fts.fingerprints()
    for index in (fts, memory):
        index.upsert(corpus(random.Random(9), 20, start=500))  # reuses the removed products' slots
    same_results(fts, memory)


def test_term_less_queries_list_by_product_id_and_ties_break_by_it():
    memory = MemoryIndex()
    memory.upsert(corpus(random.Random(3), 40))
    listed = memory.match(MatchQuery(()), 5, Filters(origin="JP"))
    ids = [h.product_id for h in listed]
    assert ids == sorted(ids) and all(h.score == 0 and h.document.origin == "JP" for h in listed)
    hits = memory.match(MatchQuery((("cream", "crème", "serum", "耳机", "max"),)), 40)
    assert [(-h.score, h.product_id) for h in hits] == sorted((-h.score, h.product_id) for h in hits)


def test_fold_matches_fts5_diacritics():
    assert fold("crème") == "creme" and fold("müller") == "muller" and fold("面霜") == "面霜"


class CountingIndex(MemoryIndex):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def match(self, *args, **kwargs):
        self.lookups += 1
        return super().match(*args, **kwargs)


def service(shop, index, **config) -> SearchService:
    svc = SearchService(index, shop, SearchConfig(token_secret="t", slots=0, **config))
    svc.refresh()
    return svc


def ids(result) -> list[str]:
    return [h.product_id for h, _ in result.items]


def test_lookup_cache_evicts_by_bytes_least_recently_used_first():
    cache = LookupCache(3_000, lambda key, hits: 100 * len(hits))  # probation 300 bytes, protected 2,700
    hit = Hit("P1", 1.0, None)
    for n in range(11):
        cache[(n,)] = (0.0, [hit] * 3)
        assert cache.get((n,)) is not None  # asked for again: protected (300 bytes each)
    assert [k for (k,) in cache._protected] == list(range(2, 11)) and cache.bytes == 2_700  # 0, 1 went
    cache[("big",)] = (0.0, [hit] * 4)  # 400 bytes: more than probation holds, so not kept at all
    assert cache.get(("big",)) is None and cache.bytes == 2_700
    cache[("small",)] = (0.0, [hit] * 2)
    cache[("other",)] = (0.0, [hit] * 2)  # one-off lookups churn probation only
    assert cache.get(("small",)) is None and cache.get((2,)) is not None


def test_entry_estimate_counts_documents_only_where_lookups_parse_them(shop):
    memory, fts5 = MemoryIndex(), Fts5Index()
    with read_only(shop) as s:
        docs = list(load_documents(s))
    memory.upsert(docs)
    fts5.upsert(docs)
    query = MatchQuery((("cream", "serum", "perfume", "sneakers"),))
    key = (query, 100, Filters(), True)
    shared = entry_bytes(key, memory.match(query, 100, field_scores=True), documents=False)
    parsed = entry_bytes(key, fts5.match(query, 100, field_scores=True), documents=True)
    assert 1_000 < shared < parsed  # FTS5 and PostgreSQL build each hit's document per lookup
    assert entry_bytes(key, [], documents=True) < 1_000


def test_lookup_cache_is_bounded_by_bytes_and_shared_across_shoppers(shop):
    index = CountingIndex()
    svc = service(shop, index, cache_bytes=60_000)
    for i in range(40):
        svc.search(f"cream serum {i}")
        svc.search(f"cream serum {i}", shopper_id="s1")  # asked for twice: protected
    assert 0 < svc._cache.bytes <= 60_000
    before = index.lookups
    svc.search("cream serum 39", shopper_id="s2")
    assert index.lookups == before  # the most recent lookups stay, whoever searches
    svc.search("cream serum 0")
    assert index.lookups > before  # the least recently used went first


def test_one_off_queries_do_not_push_out_repeated_ones(shop):
    index = CountingIndex()
    svc = service(shop, index, cache_bytes=200_000)
    for _ in range(2):
        svc.search("serum")
        svc.search("耳机")
    for i in range(200):  # a client flooding unique queries
        svc.search(f"cream {i}")
    assert svc._cache.bytes <= 200_000
    before = index.lookups
    svc.search("serum")
    svc.search("耳机")
    assert index.lookups == before


def test_per_replica_index_serves_cached_lookups_until_it_changes(shop):
    index = CountingIndex()
    svc = service(shop, index, cache_seconds=0.0)  # no time limit applies to an unshared index
    assert ids(svc.search("香水")) == []
    lookups = index.lookups
    assert ids(svc.search("香水")) == [] and index.lookups == lookups
    with transaction(shop) as s:
        catalog.create_product(
            s,
            catalog.ProductInput(
                sku="SKU-P9", merchant_id="M1", title="Karimi 香水 Perfume", category_id="C01-02",
                brand="Karimi", origin_country="JP", price="99.00", fulfillment="bonded",
                stock={"HZ-1": 2}, product_id="P9",
            ),
        )  # fmt: skip
    assert ids(svc.search("香水")) == []  # written elsewhere: not seen before the reconcile
    svc.refresh()  # the periodic reconcile finds it and drops the cached lookups
    assert ids(svc.search("香水")) == ["P9"]
    with transaction(shop) as s:
        catalog.update_product(s, "P9", status="delisted")
    svc.products_changed(product_ids=["P9"])  # a write through this replica
    assert ids(svc.search("香水")) == []


def test_shared_index_lookups_expire(shop, tmp_path):
    index = Fts5Index(str(tmp_path / "shared.db"))  # a file other processes may write
    svc = service(shop, index, cache_seconds=0.0)
    with shop() as s:
        assert index.count() == len(list(load_documents(s)))
    svc.search("cream")
    index.remove(["P1"])  # as another process would, behind this replica's back
    assert "P1" not in ids(svc.search("cream"))


class WriteDuringLookup(MemoryIndex):
    """An index whose first lookup is overtaken by a write through the replica: the write lands and
    clears the cache while the lookup (started on the old contents) is still running."""

    def __init__(self) -> None:
        super().__init__()
        self.during = None

    def match(self, *args, **kwargs):
        hits = super().match(*args, **kwargs)
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return hits


def test_a_lookup_overtaken_by_a_write_is_not_cached(shop):
    """A lookup that started before a write and ended after the write cleared the cache stored what it
    found on the old contents; on a per-replica index (no time limit) that answer was served until the
    next change: here a delisted product kept showing."""
    index = WriteDuringLookup()
    svc = service(shop, index)
    found = ids(svc.search("cream"))
    assert found
    gone = found[0]
    svc.clear_cache()

    def delist():
        with transaction(shop) as s:
            catalog.update_product(s, gone, status="delisted")
        svc.products_changed(product_ids=[gone])

    index.during = delist
    svc.search("cream")  # started before the delisting: may still show it
    assert gone not in ids(svc.search("cream"))
