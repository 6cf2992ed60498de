"""Query understanding: origin words become a filter, brand and category words boosts, each term brings
its synonyms, and a Latin word missing from the index vocabulary is corrected to its nearest indexed word
(rapidfuzz), so "karimy" finds Karimi and "japan cream" finds Japanese face creams."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial

import numpy as np
from rapidfuzz import fuzz, process

from commerce.search.analysis import has_cjk, tokens
from commerce.search.index import Hit, MatchQuery, SearchDocument
from commerce.search.lexicon import CATEGORY_ZH, ORIGIN_WORDS, SYNONYM_GROUPS

#: Smallest rapidfuzz ratio (0-100) for a correction, and the shortest word worth correcting: short
#: words have too many neighbours at one edit to guess safely.
TYPO_MIN_SCORE = 80.0
TYPO_MIN_LENGTH = 4
#: Organic score boosts for a product whose brand / leaf category the query names.
BRAND_BOOST = 0.5
CATEGORY_BOOST = 0.25
#: Misspelt words whose correction is remembered (per vocabulary: a new parser starts empty).
CORRECTIONS_CACHED = 10_000
#: Distinct words of one query looked up for a correction, the first ones; the rest are kept as typed.
#: Each lookup scans the whole vocabulary (about 25 ms at 20,000 words), and anyone may search: a
#: 100-character query of 20 made-up words cost 20 scans, half a second of CPU, per anonymous request.
CORRECTED_PER_QUERY = 3

_SYNONYMS: dict[str, tuple[str, ...]] = {}
for _group in SYNONYM_GROUPS:
    for _word in _group:
        _SYNONYMS[_word] = tuple(dict.fromkeys((_word, *_group)))


@dataclass(frozen=True)
class Vocabulary:
    """What the parser recognises, built from the indexed documents."""

    latin_terms: tuple[str, ...]  # every indexed Latin token, for typo correction
    brands: dict[tuple[str, ...], str]  # brand tokens -> brand name
    categories: dict[tuple[str, ...], str]  # category-name tokens (English or Chinese) -> category id

    @classmethod
    def from_documents(cls, docs: Iterable[SearchDocument]) -> Vocabulary:
        latin: set[str] = set()
        brands: dict[tuple[str, ...], str] = {}
        categories: dict[tuple[str, ...], str] = {}
        seen_brands: set[str] = set()
        seen_categories: set[str] = set()
        for doc in docs:
            latin.update(t for t in tokens(doc.title) if not has_cjk(t) and not t.isdigit())
            if doc.brand not in seen_brands:
                seen_brands.add(doc.brand)
                brand = tuple(tokens(doc.brand))
                brands.setdefault(brand, doc.brand)
                latin.update(t for t in brand if not has_cjk(t))
            if doc.category_path and doc.category_id not in seen_categories:
                seen_categories.add(doc.category_id)
                latin.update(t for t in tokens(" ".join(doc.category_path)) if not has_cjk(t))
                leaf = doc.category_path[-1]
                categories.setdefault(tuple(tokens(leaf)), doc.category_id)
                if leaf in CATEGORY_ZH:
                    categories.setdefault(tuple(tokens(CATEGORY_ZH[leaf])), doc.category_id)
        brands.pop((), None)
        categories.pop((), None)
        return cls(tuple(sorted(latin)), brands, categories)


@dataclass(frozen=True)
class ParsedQuery:
    text: str
    terms: tuple[str, ...]  # after corrections, origin words removed
    match: MatchQuery
    origin: str | None = None
    brand: str | None = None
    category_id: str | None = None
    corrections: dict[str, str] = field(default_factory=dict)

    def relaxed(self) -> MatchQuery:
        """Any term instead of all: the fallback when every term together matches too little."""
        return MatchQuery(self.match.groups, require_all=False)

    def organic_scores(self, hits: Sequence[Hit]) -> np.ndarray:
        """The platform's organic order without a learned ranker (also the logging policy the search-log
        simulator replays): BM25 plus a boost for the product of the named brand and leaf category."""
        return np.array(
            [
                h.score
                + BRAND_BOOST * (self.brand is not None and h.document.brand == self.brand)
                + CATEGORY_BOOST
                * (self.category_id is not None and h.document.category_id == self.category_id)
                for h in hits
            ],
            dtype=np.float64,
        )


def _phrase_index(phrases: dict[tuple[str, ...], str]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Phrases by first word, longest first, so a lookup touches only phrases that can start there."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for phrase, value in sorted(phrases.items(), key=lambda kv: -len(kv[0])):
        index.setdefault(phrase[0], []).append((phrase, value))
    return index


def _find_phrase(terms: list[str], index: dict[str, list[tuple[tuple[str, ...], str]]]) -> str | None:
    """The longest known phrase appearing as consecutive terms."""
    best: tuple[int, str] | None = None
    for i, term in enumerate(terms):
        for phrase, value in index.get(term, ()):
            n = len(phrase)
            if (best is None or n > best[0]) and tuple(terms[i : i + n]) == phrase:
                best = (n, value)
                break
    return best[1] if best else None


def _nearest_word(words: Sequence[str], term: str) -> str:
    """The closest of `words`: a fuzzy scan of the whole vocabulary, the dearest step of a parse."""
    found = process.extractOne(term, words, scorer=fuzz.ratio, score_cutoff=TYPO_MIN_SCORE)
    return found[0] if found else term


class QueryParser:
    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self._latin = set(vocabulary.latin_terms)
        self._brands = _phrase_index(vocabulary.brands)
        self._categories = _phrase_index(vocabulary.categories)
        # lru_cache, not a dict: parses run on several threads at once. Over the words, not a bound method:
        # that made every parser a reference cycle, kept past its replacement until a full collection
        # and for good once frozen (`serving.app.served_app`).
        self._nearest = lru_cache(maxsize=CORRECTIONS_CACHED)(partial(_nearest_word, vocabulary.latin_terms))

    def _correctable(self, term: str) -> bool:
        """A Latin word long enough to guess at that neither the index nor the lexicon knows."""
        if has_cjk(term) or term.isdigit() or len(term) < TYPO_MIN_LENGTH or term in self._latin:
            return False
        return term not in _SYNONYMS and term not in ORIGIN_WORDS

    def forget_corrections(self) -> None:
        self._nearest.cache_clear()

    def parse(self, text: str) -> ParsedQuery:
        raw = tokens(text)
        unknown = [t for t in dict.fromkeys(raw) if self._correctable(t)][:CORRECTED_PER_QUERY]
        fixes = {t: self._nearest(t) for t in unknown}
        corrected = [fixes.get(t, t) for t in raw]
        corrections = {a: b for a, b in zip(raw, corrected, strict=True) if a != b}
        origin = None
        terms = []
        for term in corrected:
            if term in ORIGIN_WORDS and origin is None:
                origin = ORIGIN_WORDS[term]
            else:
                terms.append(term)
        groups = tuple(_SYNONYMS.get(t, (t,)) for t in dict.fromkeys(terms))
        return ParsedQuery(
            text=text,
            terms=tuple(terms),
            match=MatchQuery(groups),
            origin=origin,
            brand=_find_phrase(terms, self._brands),
            category_id=_find_phrase(terms, self._categories),
            corrections=corrections,
        )
