"""Build the API's search service from settings (kept out of app.py so the factory stays short)."""

from __future__ import annotations

import logging
import secrets
import sqlite3
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from commerce.search.index import open_index
from crosscart.settings import Settings
from serving.search import SearchConfig, SearchRunner, SearchService, load_ranker
from serving.state import ServingState

log = logging.getLogger(__name__)


def build_search(
    settings: Settings, session_factory: sessionmaker[Session], state: ServingState, every_seconds: float
) -> SearchRunner:
    engine = session_factory.kw["bind"]
    try:
        index = open_index(settings.search_backend, engine=engine, path=settings.search_index_path)
    except sqlite3.Error as exc:  # the fts5 file: not SQLite, damaged, unwritable
        # The index is derived from the database, so a file that cannot be opened costs its persistence,
        # not search: the API refused to start ("file is not a database", naming no file), again at each
        # restart. It is left as it is for the operator.
        log.error(
            "search index %s cannot be opened (%s: %s): indexing in memory until it is fixed",
            settings.search_index_path,
            type(exc).__name__,
            exc,
        )
        index = open_index(settings.search_backend)
    config = SearchConfig(
        # never a known default: anyone holding it could sign tokens billing any campaign at any price
        token_secret=settings.ads_token_secret or secrets.token_urlsafe(32),
        slots=settings.sponsored_slots,
        reserve=Decimal(settings.ad_reserve_price),
        ranker_path=settings.search_ranker_path or None,
        cache_seconds=every_seconds,  # other replicas' writes show within the refresh interval
        cache_bytes=int(settings.search_cache_mb * 2**20),
    )
    service = SearchService(
        index,
        session_factory,
        config,
        catalog=lambda: state.catalog.current,
        ranker=load_ranker(config.ranker_path),
    )
    return SearchRunner(service, every_seconds)
