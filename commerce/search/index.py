"""Full-text product index behind one interface, with two backends scoring by BM25-style relevance:

- `Fts5Index`: SQLite FTS5 (embedded; in memory per API replica by default, or a file), scored by FTS5's
  `bm25()` with per-field weights.
- `PostgresIndex`: a `search_documents` table in PostgreSQL with a weighted `tsvector` (GIN index),
  scored by `ts_rank` with length normalisation.

Both store the same documents (text pre-segmented by `commerce.search.analysis`), accept the same
`MatchQuery` and return `Hit`s whose `score` is "higher is better". The index is derived data: it is
(re)built from the catalog (`crosscart search reindex`, or at API start) and kept current by `sync`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache
from typing import NamedTuple, Protocol

from sqlalchemy import Engine, text

from commerce.search.analysis import segment
from commerce.search.lexicon import CATEGORY_ZH, ORIGIN_TEXT

FIELDS = ("title", "brand", "category", "origin", "attributes")
#: Relative weight of a term match per field: a brand or title hit says more than an attribute hit.
FIELD_WEIGHTS = {"title": 4.0, "brand": 3.0, "category": 2.0, "origin": 1.0, "attributes": 0.5}


@lru_cache(maxsize=100_000)
def _segment_shared(text: str) -> str:
    """Segment a field many products share (brand, category, origin, attributes) once."""
    return segment(text)


@dataclass(frozen=True)
class SearchDocument:
    """One sellable product as search sees it: text fields plus what filters and result cards need."""

    product_id: str
    title: str
    brand: str
    category_id: str
    category_path: tuple[str, ...]  # category names from the root down to the leaf
    origin: str
    merchant_id: str
    price: str  # decimal string: money stays exact
    fulfillment: str
    created_at: str = ""  # ISO timestamp, for freshness
    attributes: tuple[str, ...] = ()

    def field_text(self) -> dict[str, str]:
        """Each field's index form. The leaf's Chinese name and the origin's words in both languages are
        added so a Chinese query finds an English-only listing and 日本 finds a JP product."""
        leaf = self.category_path[-1] if self.category_path else ""
        category = " ".join([*self.category_path, CATEGORY_ZH.get(leaf, "")])
        origin = " ".join([self.origin, *ORIGIN_TEXT.get(self.origin, ())])
        return {
            "title": segment(self.title),
            "brand": _segment_shared(self.brand),
            "category": _segment_shared(category),
            "origin": _segment_shared(origin),
            "attributes": _segment_shared(" ".join(self.attributes)),
        }

    @cached_property
    def _json(self) -> str:
        # Field by field: dataclasses.asdict deep-copies and dominated index builds.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def fingerprint(self) -> str:
        """Changes whenever any field does; cheap (no JSON), since a reconcile takes one per product."""
        values = tuple(getattr(self, f.name) for f in fields(self))
        return hashlib.blake2b(repr(values).encode(), digest_size=12).hexdigest()

    def to_json(self) -> str:
        return self._json

    @classmethod
    def from_json(cls, raw: str) -> SearchDocument:
        data = json.loads(raw)
        data["category_path"] = tuple(data["category_path"])
        data["attributes"] = tuple(data["attributes"])
        return cls(**data)


@dataclass(frozen=True)
class MatchQuery:
    """Groups of alternative terms: a document matches when it contains a term of every group
    (`require_all`) or of any group. Terms are analysis tokens (letters and digits only)."""

    groups: tuple[tuple[str, ...], ...]
    require_all: bool = True

    def __post_init__(self) -> None:
        for group in self.groups:
            for term in group:
                if not term or not term.isalnum():
                    raise ValueError(f"search terms are letters and digits only, got {term!r}")


@dataclass(frozen=True)
class Filters:
    origin: str | None = None
    category_ids: frozenset[str] | None = None
    merchant_id: str | None = None
    fulfillment: str | None = None
    product_ids: frozenset[str] | None = None


class Hit(NamedTuple):
    """A NamedTuple rather than a dataclass: a lookup makes a hundred, and these build ~4x faster."""

    product_id: str
    score: float  # higher is better; 0 when the query had no terms
    document: SearchDocument
    field_scores: dict[str, float] = {}  # noqa: RUF012  (per-field scores when asked for; never mutated)


class SearchIndex(Protocol):
    backend: str
    shared: bool  # other processes may write it (so a replica's cached lookups can go stale)
    hits_share_documents: bool  # hits point at documents the index keeps (not parsed per lookup)

    def ensure(self) -> None: ...
    def fingerprints(self) -> dict[str, str]: ...
    # With `expected` (fingerprints, see `still`), only the products whose entry is still as it says are
    # written or removed, each checked and written in one step; both return how many were.
    def upsert(self, docs: Iterable[SearchDocument], expected: Mapping[str, str] | None = None) -> int: ...
    def remove(self, product_ids: Iterable[str], expected: Mapping[str, str] | None = None) -> int: ...
    def count(self) -> int: ...
    def match(
        self, query: MatchQuery, limit: int, filters: Filters = Filters(), *, field_scores: bool = False
    ) -> list[Hit]: ...


def still(expected: Mapping[str, str] | None, product_id: str, fingerprint: str | None) -> bool:
    """Whether an entry (`fingerprint`, None when there is none) is as `expected` has it (no entry when
    `product_id` is not in it); always without `expected`."""
    return expected is None or expected.get(product_id) == fingerprint


def sync(
    index: SearchIndex,
    docs: Iterable[SearchDocument],
    *,
    before: Mapping[str, str] | None = None,
    batch: int = 2_000,
) -> dict[str, int]:
    """Make the index hold exactly `docs`: changed or new documents are (re)written, others removed.
    Unchanged documents cost a fingerprint comparison, so a periodic reconcile is cheap.

    `before`: the index's fingerprints, read before `docs` were read from the database. A product whose
    entry changed since was re-indexed (`refresh_products`, by this replica or another sharing the
    index) after a write that `docs` may predate: it is left as it is. The reconcile wrote its older
    copy over such a product, or removed one created meanwhile, and search missed the write until the
    next reconcile (up to 30 s)."""
    index.ensure()
    current = index.fingerprints() if before is None else before
    changed, seen = [], set()
    for doc in docs:
        seen.add(doc.product_id)
        if current.get(doc.product_id) != doc.fingerprint():
            changed.append(doc)
    written = sum(index.upsert(changed[i : i + batch], before) for i in range(0, len(changed), batch))
    removed = index.remove([p for p in current if p not in seen], before)
    return {"written": written, "removed": removed, "total": len(seen)}


def _filter_sql(filters: Filters, params: dict, prefix: str = "") -> list[str]:
    where = []
    for name in ("origin", "merchant_id", "fulfillment"):
        value = getattr(filters, name)
        if value is not None:
            where.append(f"{prefix}{name} = :{name}")
            params[name] = value
    for name, column in (("category_ids", "category_id"), ("product_ids", "product_id")):
        values = getattr(filters, name)
        if values is not None:
            keys = [f"{name}_{i}" for i in range(len(values))]
            params.update(zip(keys, sorted(values), strict=True))
            where.append(f"{prefix}{column} IN ({', '.join(':' + k for k in keys)})" if keys else "0 = 1")
    return where


def _fts5_expression(query: MatchQuery) -> str:
    groups = ["(" + " OR ".join(f'"{t}"' for t in group) + ")" for group in query.groups]
    return (" AND " if query.require_all else " OR ").join(groups)


class Fts5Index:
    """SQLite FTS5. One connection guarded by a lock (an in-memory database cannot be shared across
    connections); a query takes a few milliseconds, so the lock is not the bottleneck at API rates."""

    backend = "sqlite-fts5"
    hits_share_documents = False

    def __init__(self, path: str = ":memory:"):
        self.path = path
        self.shared = path != ":memory:"
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self.ensure()
        # a file whose tables cannot be read fails here, not at each search (the caller decides)
        self._conn.execute("SELECT rowid FROM search_fts LIMIT 1").fetchall()

    def ensure(self) -> None:
        with self._lock:
            self._conn.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS search_meta (
                    rowid INTEGER PRIMARY KEY, product_id TEXT UNIQUE NOT NULL, fingerprint TEXT NOT NULL,
                    origin TEXT, category_id TEXT, merchant_id TEXT, fulfillment TEXT, doc TEXT NOT NULL);
                CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
                    {", ".join(FIELDS)}, tokenize = 'unicode61 remove_diacritics 2');
                """
            )

    def fingerprints(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT product_id, fingerprint FROM search_meta"))

    def upsert(self, docs: Iterable[SearchDocument], expected: Mapping[str, str] | None = None) -> int:
        rows = [(d, d.field_text()) for d in docs]  # segment outside the lock
        written = 0
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")  # read and write in one step for other processes on the file too
            try:
                for doc, fields in rows:
                    found = cur.execute(
                        "SELECT rowid, fingerprint FROM search_meta WHERE product_id = ?", (doc.product_id,)
                    ).fetchone()
                    if not still(expected, doc.product_id, found and found[1]):
                        continue
                    if found is not None:
                        cur.execute("DELETE FROM search_fts WHERE rowid = ?", found[:1])
                        cur.execute("DELETE FROM search_meta WHERE rowid = ?", found[:1])
                    cur.execute(
                        "INSERT INTO search_meta (product_id, fingerprint, origin, category_id, merchant_id,"
                        " fulfillment, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            doc.product_id,
                            doc.fingerprint(),
                            doc.origin,
                            doc.category_id,
                            doc.merchant_id,
                            doc.fulfillment,
                            doc.to_json(),
                        ),
                    )
                    cur.execute(
                        f"INSERT INTO search_fts (rowid, {', '.join(FIELDS)}) VALUES (?, ?, ?, ?, ?, ?)",
                        (cur.lastrowid, *(fields[f] for f in FIELDS)),
                    )
                    written += 1
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return written

    def remove(self, product_ids: Iterable[str], expected: Mapping[str, str] | None = None) -> int:
        ids = list(product_ids)
        removed = 0
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            for pid in ids:
                found = cur.execute(
                    "SELECT rowid, fingerprint FROM search_meta WHERE product_id = ?", (pid,)
                ).fetchone()
                if found is not None and still(expected, pid, found[1]):
                    cur.execute("DELETE FROM search_fts WHERE rowid = ?", found[:1])
                    cur.execute("DELETE FROM search_meta WHERE rowid = ?", found[:1])
                    removed += 1
            cur.execute("COMMIT")
        return removed

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM search_meta").fetchone()[0]

    def match(
        self, query: MatchQuery, limit: int, filters: Filters = Filters(), *, field_scores: bool = False
    ) -> list[Hit]:
        params: dict = {"limit": limit}
        where = _filter_sql(filters, params, "m.")
        weights = ", ".join(str(FIELD_WEIGHTS[f]) for f in FIELDS)
        extra = ""
        if field_scores:
            for i, name in enumerate(FIELDS):
                one = ", ".join("1" if j == i else "0" for j in range(len(FIELDS)))
                extra += f", -bm25(search_fts, {one}) AS s_{name}"
        if query.groups:
            params["q"] = _fts5_expression(query)
            if where:
                sql = (
                    f"SELECT m.product_id, -bm25(search_fts, {weights}) AS score, m.doc{extra}"
                    " FROM search_fts JOIN search_meta m ON m.rowid = search_fts.rowid"
                    f" WHERE search_fts MATCH :q {''.join(' AND ' + w for w in where)}"
                    " ORDER BY score DESC, m.product_id LIMIT :limit"
                )
            else:  # rank inside the index first, then read only the winners' documents
                names = ", ".join(f"t.s_{f}" for f in FIELDS) if field_scores else ""
                sql = (
                    f"SELECT m.product_id, t.score, m.doc{', ' + names if names else ''} FROM ("
                    f"SELECT rowid, -bm25(search_fts, {weights}) AS score{extra} FROM search_fts"
                    " WHERE search_fts MATCH :q ORDER BY score DESC LIMIT :limit) AS t"
                    " JOIN search_meta m ON m.rowid = t.rowid ORDER BY t.score DESC, m.product_id"
                )
        else:
            zeros = "".join(f", 0.0 AS s_{name}" for name in FIELDS) if field_scores else ""
            sql = (
                f"SELECT m.product_id, 0.0 AS score, m.doc{zeros} FROM search_meta m"
                f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY m.product_id LIMIT :limit"
            )
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_hit(row, field_scores) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _hit(row: Sequence, field_scores: bool) -> Hit:
    scores = dict(zip(FIELDS, map(float, row[3:]), strict=True)) if field_scores else {}
    return Hit(str(row[0]), float(row[1]), SearchDocument.from_json(row[2]), scores)


_PG_WEIGHT = {"title": "A", "brand": "B", "category": "C", "origin": "D", "attributes": "D"}
# ts_rank's weight array is ordered {D, C, B, A}; one-hot arrays give each field's own score.
_PG_FIELD_WEIGHTS = {
    "title": "{0,0,0,1}",
    "brand": "{0,0,1,0}",
    "category": "{0,1,0,0}",
    "origin": "{1,0,0,0}",
    "attributes": "{1,0,0,0}",
}
_PG_WEIGHTS = "{0.1, 0.5, 0.75, 1.0}"  # D (origin, attributes), C (category), B (brand), A (title)


def _tsquery(query: MatchQuery) -> str:
    groups = ["(" + " | ".join(f"'{t}'" for t in group) + ")" for group in query.groups]
    return (" & " if query.require_all else " | ").join(groups)


class PostgresIndex:
    """PostgreSQL full text over pre-segmented text (`simple` configuration: no stemming, no stop words,
    so Chinese tokens pass through). Writes are visible to every replica as soon as they commit."""

    backend = "postgresql"
    hits_share_documents = False
    shared = True

    def __init__(self, engine: Engine, table: str = "search_documents"):
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.engine, self.table = engine, table

    def ensure(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    " product_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, origin TEXT,"
                    " category_id TEXT, merchant_id TEXT, fulfillment TEXT, doc TEXT NOT NULL,"
                    " tsv TSVECTOR NOT NULL)"
                )
            )
            conn.execute(
                text(f"CREATE INDEX IF NOT EXISTS ix_{self.table}_tsv ON {self.table} USING GIN (tsv)")
            )

    def fingerprints(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(text(f"SELECT product_id, fingerprint FROM {self.table}")).all())

    def upsert(self, docs: Iterable[SearchDocument], expected: Mapping[str, str] | None = None) -> int:
        rows = []
        for doc in docs:
            fields = doc.field_text()
            rows.append(
                {
                    "product_id": doc.product_id,
                    "fingerprint": doc.fingerprint(),
                    "origin": doc.origin,
                    "category_id": doc.category_id,
                    "merchant_id": doc.merchant_id,
                    "fulfillment": doc.fulfillment,
                    "doc": doc.to_json(),
                    **{f"f_{f}": fields[f] for f in FIELDS},
                }
            )
        if not rows:
            return 0
        columns = ("fingerprint", "origin", "category_id", "merchant_id", "fulfillment", "doc")
        tsv = " || ".join(f"setweight(to_tsvector('simple', :f_{f}), '{_PG_WEIGHT[f]}')" for f in FIELDS)
        insert = (
            f"INSERT INTO {self.table} (product_id, {', '.join(columns)}, tsv)"
            f" VALUES (:product_id, {', '.join(':' + c for c in columns)}, {tsv}) ON CONFLICT (product_id)"
        )
        with self.engine.begin() as conn:
            if expected is None:
                updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*columns, "tsv"))
                return conn.execute(text(f"{insert} DO UPDATE SET {updates}"), rows).rowcount
            # one statement a row, each checking the entry it writes: absent, or as `expected`
            new = [row for row in rows if row["product_id"] not in expected]
            old = [
                {**row, "expected": expected[row["product_id"]]}
                for row in rows
                if row["product_id"] in expected
            ]
            written = conn.execute(text(f"{insert} DO NOTHING"), new).rowcount if new else 0
            if old:
                updates = ", ".join(f"{c} = :{c}" for c in columns)
                written += conn.execute(
                    text(
                        f"UPDATE {self.table} SET {updates}, tsv = {tsv}"
                        " WHERE product_id = :product_id AND fingerprint = :expected"
                    ),
                    old,
                ).rowcount
            return written

    def remove(self, product_ids: Iterable[str], expected: Mapping[str, str] | None = None) -> int:
        ids = list(product_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            if expected is None:
                return conn.execute(
                    text(f"DELETE FROM {self.table} WHERE product_id = ANY(:ids)"), {"ids": ids}
                ).rowcount
            kept = [{"product_id": p, "expected": expected[p]} for p in ids if p in expected]
            if not kept:
                return 0
            return conn.execute(
                text(f"DELETE FROM {self.table} WHERE product_id = :product_id AND fingerprint = :expected"),
                kept,
            ).rowcount

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {self.table}")).scalar_one()

    def match(
        self, query: MatchQuery, limit: int, filters: Filters = Filters(), *, field_scores: bool = False
    ) -> list[Hit]:
        params: dict = {"limit": limit}
        where = _filter_sql(filters, params)
        if query.groups:
            params["q"] = _tsquery(query)
            extra = (
                "".join(f", ts_rank('{_PG_FIELD_WEIGHTS[f]}', tsv, q, 1) AS s_{f}" for f in FIELDS)
                if field_scores
                else ""
            )
            sql = (
                f"SELECT product_id, ts_rank('{_PG_WEIGHTS}', tsv, q, 1) AS score, doc{extra}"
                f" FROM {self.table}, to_tsquery('simple', :q) AS q WHERE tsv @@ q"
                f"{''.join(' AND ' + w for w in where)} ORDER BY score DESC, product_id LIMIT :limit"
            )
        else:
            zeros = "".join(f", 0.0 AS s_{f}" for f in FIELDS) if field_scores else ""
            sql = (
                f"SELECT product_id, 0.0 AS score, doc{zeros} FROM {self.table}"
                f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY product_id LIMIT :limit"
            )
        with self.engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
        return [_hit(row, field_scores) for row in rows]


def open_index(backend: str, *, engine: Engine | None = None, path: str = ":memory:") -> SearchIndex:
    """The index a deployment configured: `memory` (in this process), `fts5` (embedded SQLite, `path`) or
    `postgresql` (needs `engine`)."""
    if backend == "memory":
        from commerce.search.memory import MemoryIndex

        return MemoryIndex()
    if backend == "fts5":
        return Fts5Index(path)
    if backend == "postgresql":
        if engine is None or engine.dialect.name != "postgresql":
            raise ValueError("the postgresql search backend needs a PostgreSQL engine")
        return PostgresIndex(engine)
    raise ValueError(f"unknown search backend {backend!r}; choose memory, fts5 or postgresql")


def restrict(filters: Filters, product_ids: Collection[str]) -> Filters:
    """`filters` limited to `product_ids` (e.g. the products an ad campaign promotes)."""
    return Filters(
        origin=filters.origin,
        category_ids=filters.category_ids,
        merchant_id=filters.merchant_id,
        fulfillment=filters.fulfillment,
        product_ids=frozenset(product_ids),
    )
