"""A logged page is stored once although the exposure writer retries a batch whose COMMIT was kept but
not acknowledged; migration 0028 removes the repeats stored before and adds the unique key."""

from __future__ import annotations

from sqlalchemy import exc, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from commerce import migrate
from commerce.db import make_engine, make_session_factory, transaction
from commerce.experiments import ExperimentImpression
from commerce.services.experiments import create_experiment, start_experiment
from serving.ab import ExposureLog

PAGE = [
    {"page_id": "page1", "slot": i, "product_id": f"p0{i}", "team": None, "propensity": None}
    for i in range(3)
]
BEFORE = "0027_coupon_campaign_fk"


class AckLostSession(Session):
    """COMMIT reaches the database, its acknowledgement does not."""

    def commit(self) -> None:
        super().commit()
        raise exc.OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


def _rows(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(ExperimentImpression))


def test_a_retried_batch_stores_each_page_once_and_0028_removes_earlier_repeats(database_url):
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        experiment = create_experiment(s, "e", {"a": 1, "b": 1})
        start_experiment(s, "e")
        experiment_id = experiment.id
    writer = ExposureLog(sessionmaker(bind=engine, class_=AckLostSession, expire_on_commit=False))
    writer.note_page("e", "a", "s1", PAGE, None)
    writer.flush()  # kept, but the writer saw an error: the page stays queued
    assert _rows(factory) == 3 and len(writer.pages) == 1
    writer.session_factory = factory
    writer.flush()  # the retry
    assert _rows(factory) == 3 and len(writer.pages) == 0  # was 6

    migrate.downgrade(database_url, BEFORE)  # a database from before the key, with repeats stored
    with engine.begin() as conn:
        conn.execute(
            insert(ExperimentImpression.__table__),
            [{**row, "experiment_id": experiment_id, "variant": "a", "unit_id": "s1"} for row in PAGE[:2]],
        )
    assert _rows(factory) == 5
    migrate.upgrade(database_url)
    with factory() as s:
        kept = s.execute(select(ExperimentImpression.slot).order_by(ExperimentImpression.id)).scalars().all()
    assert kept == [0, 1, 2]  # the first of each slot
    assert migrate.schema_diff(database_url) == []
    engine.dispose()
