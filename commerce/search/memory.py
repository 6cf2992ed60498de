"""`MemoryIndex`: the search index held in the API process as numpy posting arrays, scored exactly as
SQLite FTS5's `bm25()` scores the same documents (same tokens, field weights, k1 = 1.2, b = 0.75).

Why: FTS5 evaluates `bm25()` row by row for every document a query matches (about 2.5 us each), so a
category word that matches 4,000 of 100,000 products costs 4-9 ms a lookup, above the API's whole budget
for a search. Here a term's postings are two arrays (document slots, per-field counts) and a lookup is a
few vectorised operations over them: well under a millisecond for the same query. Like the default FTS5
index, it is per replica and derived data: built from the catalog at start and kept current by `sync`.
"""

from __future__ import annotations

import math
import sys
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np

from commerce.search.index import FIELD_WEIGHTS, FIELDS, Filters, Hit, MatchQuery, SearchDocument, still

#: FTS5's bm25() constants (sqlite/ext/fts5/fts5_aux.c).
K1, B = 1.2, 0.75
_WEIGHTS = np.array([FIELD_WEIGHTS[f] for f in FIELDS])
_NONE = -1  # filter code of a value no document has
_MASK_FROM = 1024  # postings in a union from which a mask over all slots is cheaper than sorting


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return unicodedata.normalize("NFD", char)[0] if ord(char) < 0x250 else char


def fold(term: str) -> str:
    """A token as FTS5's `unicode61 remove_diacritics 2` stores it: Latin letters lose their accents."""
    return term if term.isascii() else "".join(map(_fold_char, term))


def _member(sorted_slots: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Which of `slots` are in `sorted_slots` (a binary search each)."""
    if not len(sorted_slots):
        return np.zeros(len(slots), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_slots, slots), len(sorted_slots) - 1)
    return sorted_slots[at] == slots


class _Codes:
    """Small integer codes for a filter column's values, so filters are array comparisons."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def add(self, value: str) -> int:
        return self.codes.setdefault(value, len(self.codes))

    def get(self, value: str) -> int:
        return self.codes.get(value, _NONE)


class MemoryIndex:
    """In-process index with FTS5's ranking. Every call holds one lock; a lookup takes tens of
    microseconds under it, writes (a reconcile, a product change) a few milliseconds per thousand."""

    backend = "memory"
    shared = False
    hits_share_documents = True
    _FILTERS = ("origin", "category_id", "merchant_id", "fulfillment")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slot: dict[str, int] = {}  # product -> slot; slots of removed products are reused
        self._free: list[int] = []
        self._docs: list[SearchDocument | None] = []
        self._fingerprints: dict[str, str] = {}
        self._doc_terms: list[tuple[str, ...]] = []  # slot -> its distinct terms, to undo on removal
        self._length = np.zeros(0)  # slot -> tokens over every field (FTS5's xColumnSize(-1))
        self._codes = {name: _Codes() for name in self._FILTERS}
        self._filter = {name: np.zeros(0, dtype=np.int32) for name in self._FILTERS}
        self._tokens = 0.0  # over live documents
        # term -> (sorted slots, per-field counts (n, len(FIELDS)), weighted frequency)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._pid_rank: np.ndarray | None = None  # slot -> rank of its product id, built when needed

    # --- writing ---------------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Nothing to create: the index lives in this process."""

    def fingerprints(self) -> dict[str, str]:
        with self._lock:
            return dict(self._fingerprints)

    def count(self) -> int:
        with self._lock:
            return len(self._slot)

    def upsert(self, docs: Iterable[SearchDocument], expected: Mapping[str, str] | None = None) -> int:
        rows = []
        for doc in docs:  # segment outside the lock
            counts: dict[str, list[int]] = {}
            length = 0
            text = doc.field_text()
            for f, name in enumerate(FIELDS):
                words = text[name].split()
                for word in words:
                    # interned: each document's term tuple then shares the strings with the postings
                    counts.setdefault(sys.intern(fold(word)), [0] * len(FIELDS))[f] += 1
                length += len(words)
            rows.append((doc, counts, length))
        with self._lock:
            rows = [
                row
                for row in rows
                if still(expected, row[0].product_id, self._fingerprints.get(row[0].product_id))
            ]
            self._drop([doc.product_id for doc, _, _ in rows if doc.product_id in self._slot])
            added: dict[str, list[tuple[int, list[int]]]] = {}
            for doc, counts, length in rows:
                slot = self._place(doc, tuple(counts), length)
                for term, per_field in counts.items():
                    added.setdefault(term, []).append((slot, per_field))
            for term, postings in added.items():
                slots = np.fromiter((s for s, _ in postings), dtype=np.int64, count=len(postings))
                per_field = np.array([c for _, c in postings], dtype=np.uint16)  # tokens per field
                old = self._postings.get(term)
                if old is not None:
                    slots = np.concatenate([old[0], slots])
                    per_field = np.concatenate([old[1], per_field])
                order = np.argsort(slots, kind="stable")
                slots, per_field = slots[order], per_field[order]
                self._postings[term] = (slots, per_field, per_field @ _WEIGHTS)
            self._pid_rank = None
        return len(rows)

    def remove(self, product_ids: Iterable[str], expected: Mapping[str, str] | None = None) -> int:
        with self._lock:
            return self._drop(
                [p for p in set(product_ids) if p in self._slot and still(expected, p, self._fingerprints[p])]
            )

    def _place(self, doc: SearchDocument, terms: tuple[str, ...], length: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._docs)
            self._docs.append(None)
            self._doc_terms.append(())
            if slot >= len(self._length):  # grow the per-slot arrays geometrically
                size = max(1024, 2 * len(self._length))
                self._length = np.resize(self._length, size)
                for name in self._FILTERS:
                    self._filter[name] = np.resize(self._filter[name], size)
        self._slot[doc.product_id] = slot
        self._docs[slot] = doc
        self._doc_terms[slot] = terms
        self._fingerprints[doc.product_id] = doc.fingerprint()
        self._length[slot] = length
        self._tokens += length
        for name in self._FILTERS:
            self._filter[name][slot] = self._codes[name].add(getattr(doc, name))
        return slot

    def _drop(self, product_ids: list[str]) -> int:
        if not product_ids:
            return 0
        by_term: dict[str, list[int]] = {}
        for pid in product_ids:
            slot = self._slot.pop(pid)
            del self._fingerprints[pid]
            for term in self._doc_terms[slot]:
                by_term.setdefault(term, []).append(slot)
            self._tokens -= self._length[slot]
            self._docs[slot], self._doc_terms[slot] = None, ()
            self._free.append(slot)
        for term, slots in by_term.items():
            old_slots, per_field, weighted = self._postings[term]
            keep = ~np.isin(old_slots, slots)
            if keep.any():
                self._postings[term] = (old_slots[keep], per_field[keep], weighted[keep])
            else:
                del self._postings[term]
        self._pid_rank = None
        return len(product_ids)

    # --- reading ---------------------------------------------------------------------------------------

    def match(
        self, query: MatchQuery, limit: int, filters: Filters = Filters(), *, field_scores: bool = False
    ) -> list[Hit]:
        with self._lock:
            if not self._slot or limit <= 0:
                return []
            if filters.product_ids is not None:  # a few named products (an ad's): test just those
                named = sorted(self._slot[p] for p in filters.product_ids if p in self._slot)
                slots = self._matching(query, np.array(named, dtype=np.int64))
            elif query.groups:
                slots = self._matching(query)
            else:
                slots = np.fromiter(self._slot.values(), dtype=np.int64, count=len(self._slot))
            slots = self._filtered(slots, filters)
            if not len(slots):
                return []
            if not query.groups:
                top = slots[np.argsort(self._ranks()[slots], kind="stable")[:limit]].tolist()
                zeros = dict.fromkeys(FIELDS, 0.0) if field_scores else {}
                return [Hit(self._docs[s].product_id, 0.0, self._docs[s], dict(zeros)) for s in top]
            phrases = [fold(t) for group in query.groups for t in group]
            scores = self._bm25(phrases, slots, None)
            if len(slots) > limit:  # the best `limit`, ties at the edge broken by product id
                edge = np.partition(scores, len(scores) - limit)[len(scores) - limit]
                keep = scores >= edge
                slots, scores = slots[keep], scores[keep]
            order = np.lexsort((self._ranks()[slots], -scores))[:limit]
            slots, scores = slots[order], scores[order]
            docs = self._docs
            if not field_scores:
                pairs = zip(slots.tolist(), scores.tolist(), strict=True)
                return [Hit(docs[s].product_id, sc, docs[s]) for s, sc in pairs]
            per_field = [self._bm25(phrases, slots, f).tolist() for f in range(len(FIELDS))]
            return [
                Hit(docs[s].product_id, sc, docs[s], dict(zip(FIELDS, col, strict=True)))
                for s, sc, col in zip(
                    slots.tolist(), scores.tolist(), zip(*per_field, strict=True), strict=True
                )
            ]

    def _terms(self, group: tuple[str, ...]) -> np.ndarray:
        found = [self._postings[t][0] for t in map(fold, group) if t in self._postings]
        if len(found) <= 1:
            return found[0] if found else np.zeros(0, dtype=np.int64)
        return self._union(found)

    def _union(self, parts: list[np.ndarray]) -> np.ndarray:
        """Sorted distinct slots of several sorted arrays: a mask over the slots beats sorting when the
        arrays are long (a synonym group of common words)."""
        if sum(map(len, parts)) < _MASK_FROM:
            return np.unique(np.concatenate(parts))
        mask = np.zeros(len(self._docs), dtype=bool)
        for part in parts:
            mask[part] = True
        return np.flatnonzero(mask)

    def _matching(self, query: MatchQuery, within: np.ndarray | None = None) -> np.ndarray:
        """Sorted slots matching the query (among `within`, when given)."""
        if not query.groups:
            return within if within is not None else np.zeros(0, dtype=np.int64)
        sets = sorted((self._terms(g) for g in query.groups), key=len)
        if not query.require_all:
            out = self._union(sets)
            return out if within is None else within[_member(out, within)]
        out = sets[0] if within is None else within
        for other in sets[1:] if within is None else sets:
            if not len(out):
                break
            out = out[_member(other, out)]
        return out

    def _filtered(self, slots: np.ndarray, filters: Filters) -> np.ndarray:
        keep = np.ones(len(slots), dtype=bool)
        for name in ("origin", "merchant_id", "fulfillment"):
            value = getattr(filters, name)
            if value is not None:
                keep &= self._filter[name][slots] == self._codes[name].get(value)
        if filters.category_ids is not None:
            codes = [self._codes["category_id"].get(c) for c in filters.category_ids]
            keep &= np.isin(self._filter["category_id"][slots], codes)
        return slots[keep]

    def _bm25(self, phrases: list[str], slots: np.ndarray, field: int | None) -> np.ndarray:
        """FTS5's bm25() (negated: higher is better) of `slots` for a query of these phrases, with the
        field weights, or with weight 1 on `field` alone. Summed phrase by phrase in FTS5's order, so the
        scores are the ones FTS5 computes."""
        n_docs = len(self._slot)
        norm = K1 * (1 - B + B * self._length[slots] / (self._tokens / n_docs))
        score = np.zeros(len(slots))
        for term in phrases:
            postings = self._postings.get(term)
            if postings is None:
                continue
            term_slots, per_field, weighted = postings
            hits = len(term_slots)
            idf = math.log((n_docs - hits + 0.5) / (hits + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            at = np.minimum(np.searchsorted(term_slots, slots), hits - 1)
            present = term_slots[at] == slots
            freq = np.where(present, weighted[at] if field is None else per_field[at, field], 0.0)
            score += idf * ((freq * (K1 + 1.0)) / (freq + norm))
        return score

    def _ranks(self) -> np.ndarray:
        """Slot -> position of its product id in sorted order (ties and term-less queries go by id)."""
        if self._pid_rank is None:
            rank = np.zeros(len(self._docs), dtype=np.int64)
            for i, pid in enumerate(sorted(self._slot)):
                rank[self._slot[pid]] = i
            self._pid_rank = rank
        return self._pid_rank
