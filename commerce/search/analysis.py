"""Text analysis shared by indexing and querying: Chinese segmented with jieba, Latin text lower-cased.

Both index backends receive text already cut into space-separated tokens, so SQLite FTS5 (unicode61)
and PostgreSQL (`simple` configuration) see the same terms and neither needs a Chinese parser.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache

import jieba

jieba.setLogLevel(logging.WARNING)
_ready = threading.Lock()
_initialized = False
# A token worth indexing: a run of letters/digits (any script). Punctuation and spaces are dropped.
_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _init() -> None:
    """Load jieba's dictionary once (about a second), under a lock so concurrent first calls wait."""
    global _initialized
    if not _initialized:
        with _ready:
            if not _initialized:
                jieba.initialize()
                _initialized = True


def normalize(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def has_cjk(token: str) -> bool:
    return _CJK.search(token) is not None


_CJK_RUN = re.compile(r"([\u3400-\u9fff\uf900-\ufaff]+)")


#: Chinese runs remembered per mode. Indexed text is the catalog's, whose names repeat across listings;
#: query text is any client's, so its cache stays small: random 100-character queries filled the shared
#: 100,000-run cache at 8 KB a query (840 MB a worker once full).
INDEX_RUNS_CACHED, QUERY_RUNS_CACHED = 100_000, 1_024


def _cut(run: str, for_index: bool) -> tuple[str, ...]:
    cut = jieba.cut_for_search(run) if for_index else jieba.cut(run)
    return tuple(w for w in cut if w.strip())


_CUT_CACHED = {
    True: lru_cache(maxsize=INDEX_RUNS_CACHED)(lambda run: _cut(run, True)),
    False: lru_cache(maxsize=QUERY_RUNS_CACHED)(lambda run: _cut(run, False)),
}


def tokens(text: str, *, for_index: bool = False) -> list[str]:
    """Terms of `text` in order. Only Chinese runs go through jieba (cached per run: product names repeat
    across listings); other text splits on non-word characters. Indexing uses jieba's search mode, which
    also emits the shorter words inside a long one (精华液 -> 精华, 精华液), so precise-mode queries match."""
    _init()
    out: list[str] = []
    for i, part in enumerate(_CJK_RUN.split(normalize(text))):
        if i % 2:
            out.extend(_CUT_CACHED[for_index](part))
        else:
            out.extend(w.replace("_", "") for w in _WORD.findall(part) if w.strip("_"))
    return out


def segment(text: str) -> str:
    """Index form of a field: its tokens joined by spaces."""
    return " ".join(tokens(text, for_index=True))
