"""A large campaign's audience export streams its members (batches of rows, not every ORM object at
once): the memory it takes stays flat as the audience grows."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import sessionmaker

import commerce.all_models  # noqa: F401  (every table on the metadata)
from commerce.campaigns import Campaign, CampaignMember
from commerce.db import Base
from commerce.services.campaigns import export_audience_csv

MEMBERS = 30_000


def test_the_audience_export_does_not_hold_the_whole_audience(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")  # no foreign keys: members only
    Base.metadata.create_all(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Campaign.__table__),
            [dict(campaign_id="c1", name="c", channel="site", status="running", budget=Decimal(1000),
                  spent=Decimal(0), control_share=Decimal("0.1"), starts_at=now,
                  ends_at=now + timedelta(days=1), created_at=now)],
        )  # fmt: skip
        conn.execute(
            insert(CampaignMember.__table__),
            [dict(campaign_id="c1", shopper_id=f"s{i:06d}", arm="cp1", coupon_id="cp1", grant_id=i)
             for i in range(MEMBERS)],
        )  # fmt: skip
    out = io.StringIO()
    with sessionmaker(bind=engine)() as session:
        tracemalloc.start()
        try:
            assert export_audience_csv(session, "c1", out) == MEMBERS
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert out.getvalue().splitlines()[1] == "s000000,cp1,cp1,site,0"
    # ~1.5 KB a member when every ORM object was held (44 MB here); one batch of rows and the CSV now
    assert peak < 20 * 2**20, f"{peak / 2**20:.1f} MB"
    engine.dispose()
