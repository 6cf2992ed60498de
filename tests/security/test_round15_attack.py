"""Round 15: a hostile client against the surfaces changed on the day look-alike shopper ids came to be
resolved (event batches, exposures, storefront pages). Each test failed before its fix."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import event, func, select

from commerce.db import read_only
from commerce.events import BehaviorEvent
from tests.search.conftest import api, shop  # noqa: F401  (the bilingual shop on SQLite and PostgreSQL)
from tests.security.test_hostile_clients_round4 import _keys
from tests.serving.conftest import auth


@contextmanager
def _statements(engine):
    """The number of statements `engine` runs inside the block (a one-item list, filled on exit)."""
    seen = [0]

    def count(*_args) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _wide(text: str) -> str:
    """`text` in full-width letters and digits, as a Chinese input method types it."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_a_batch_of_distinct_look_alikes_reads_each_table_once(api, shop):  # noqa: F811
    """An event batch's ids are read as stored (`ｓ1` is s1, `ｐ1` is P1), each distinct look-alike by a
    `get` of its own: a storefront key's batch of 1,000 events naming 1,000 distinct look-alike shopper
    ids (or product ids) ran 1,002 statements where a batch in normal form runs 3, within one quota's
    1,000 events. Each table's look-alikes are read in one query: the batch's statements stay a handful,
    and the events still name the stored rows."""
    engine = shop.kw["bind"]
    storefront = auth(_keys(shop)["storefront"])
    now = datetime.now(UTC).isoformat()
    shoppers = [_wide(f"s{i}") for i in range(1000)]  # s0-s2 are stored shoppers, the rest unknown
    products = [_wide(f"P{i}") for i in range(1000)]  # so are P1-P9
    events = [
        {"event_id": f"e{i}", "event_type": "view", "shopper_id": s, "product_id": p, "ts": now}
        for i, (s, p) in enumerate(zip(shoppers, products, strict=True))
    ]
    with _statements(engine) as statements:
        sent = api.post("/v1/events", json={"events": events}, headers=storefront)
    assert sent.status_code == 202, sent.text
    assert sent.json()["inserted"] == 1000
    assert statements[0] <= 10, statements[0]
    with read_only(shop) as s:
        stored = s.execute(
            select(BehaviorEvent.shopper_id, BehaviorEvent.product_id).where(
                BehaviorEvent.shopper_id.in_(["s1", "s999"])
            )
        ).all()
        assert sorted(stored) == [("s1", "P1"), ("s999", "P999")]
        assert (
            s.scalar(
                select(func.count()).select_from(BehaviorEvent).where(BehaviorEvent.shopper_id.like("%ｓ%"))
            )
            == 0
        )
