"""Round 5 of attacking the running API and console as a hostile client (holes rounds 1-4 and docs/api.md
do not list): each test failed before its fix."""

from __future__ import annotations

import random
import tracemalloc

from commerce.search import analysis


def _random_chinese(rnd: random.Random, n: int) -> str:
    return "".join(chr(rnd.randint(0x4E00, 0x9FA5)) for _ in range(n))


def test_random_search_queries_do_not_fill_the_process_with_cached_cuts():
    """Every Chinese run a query held was kept in the 100,000-run cache the index fills with product
    names: random 100-character queries (anyone may search) took 8 KB each there, 840 MB a worker once
    full. Query runs have a small cache of their own; a query past it keeps nothing."""
    rnd = random.Random(5)
    analysis.tokens("面霜")  # jieba's dictionary is loaded once, not per query
    tracemalloc.start()  # before the cache fills, so that what it lets go counts too
    try:
        for _ in range(analysis.QUERY_RUNS_CACHED + 100):
            analysis.tokens(_random_chinese(rnd, 20))
        full = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            analysis.tokens(_random_chinese(rnd, 20))
        kept = tracemalloc.get_traced_memory()[0] - full
    finally:
        tracemalloc.stop()
    assert kept < 200_000, f"500 more queries kept {kept / 1e6:.1f} MB"
    assert analysis.segment("保湿面霜").split() == ["保湿", "面霜"]  # indexing cuts as before

