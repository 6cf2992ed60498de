"""Memory of the search lookup cache under a flood of unique queries, through `SearchService._match`
(the cache path), on the generator's 5,000-product catalogue.

    .venv/bin/python -m bench.search_cache memory 0 22000 default 2   # backend, per-field scores,
                                                                       # queries, cache bytes, asks each

Prints RSS growth, entries kept, the cache's estimate of its bytes, and how many of five head queries
(asked twice before the flood) had to be looked up again afterwards. Run on the commit before the byte
bound (cache bytes `default` there meant 20,000 entries) for the before figure.
"""

from __future__ import annotations

import gc
import inspect
import sys

from bench.search import documents, generator_catalog
from commerce.search.index import Filters, Fts5Index, MatchQuery
from commerce.search.memory import MemoryIndex
from serving.search import SearchConfig, SearchService


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main(argv: list[str]) -> None:
    backend, fields, n = argv[0], argv[1] == "1", int(argv[2])
    bound, repeat = (argv[3] if len(argv) > 3 else "default"), int(argv[4]) if len(argv) > 4 else 1
    docs = documents(generator_catalog(5000))
    words: dict[str, int] = {}
    for d in docs:
        for w in d.title.lower().split():
            if w.isalnum():
                words[w] = words.get(w, 0) + 1
    common = sorted(words, key=lambda w: -words[w])[:5]
    index = MemoryIndex() if backend == "memory" else Fts5Index()
    index.upsert(docs)
    extra = {}
    if bound != "default":
        bytes_bound = "cache_bytes" in inspect.signature(SearchConfig).parameters
        name = "cache_bytes" if bytes_bound else "cache_entries"
        extra = {name: int(bound)}
    svc = SearchService(index, None, SearchConfig(token_secret="t", **extra))
    head = [MatchQuery(((w,),)) for w in common]
    for _ in range(2):
        for q in head:
            svc._match(q, 100, Filters(), fields)
    gc.collect()
    before = rss()
    for i in range(n):
        q = MatchQuery(((common[i % 5],), (f"zz{i}",)), require_all=False)
        for _ in range(repeat):
            svc._match(q, 100, Filters(), fields)
    gc.collect()
    grown = rss() - before
    lookups = []
    match = index.match
    index.match = lambda *a, **k: lookups.append(1) or match(*a, **k)
    for q in head:
        svc._match(q, 100, Filters(), fields)
    cache = svc._cache
    print(
        f"{backend} fields={fields} flood={n} asked={repeat}x entries={len(cache)}"
        f" rss_growth={grown / 2**20:.1f}MiB estimated={getattr(cache, 'bytes', 0) / 2**20:.1f}MiB"
        f" head_lookups_again={len(lookups)}/{len(head)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
