"""Build the API's search service from settings (kept out of app.py so the factory stays short)."""

from __future__ import annotations

import secrets
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from commerce.search.index import open_index
from crosscart.settings import Settings
from serving.search import SearchConfig, SearchRunner, SearchService, load_ranker
from serving.state import ServingState


def build_search(
    settings: Settings, session_factory: sessionmaker[Session], state: ServingState, every_seconds: float
) -> SearchRunner:
    engine = session_factory.kw["bind"]
    index = open_index(settings.search_backend, engine=engine, path=settings.search_index_path)
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
