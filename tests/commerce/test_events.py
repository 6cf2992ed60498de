"""The behaviour event log: idempotent batch appends, all-or-nothing validation, export to the contract."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.events import BehaviorEvent
from commerce.identity import Keyring, id_digest
from commerce.services import shoppers
from commerce.services.events import client_event_id, export_events, record_events
from commerce.shoppers import ShopperIdentity
from tests.commerce.conftest import IDENTITY_KEY, NOW, make_id_number


def _event(i, **kw):
    return {
        "event_id": f"e{i}",
        "ts": NOW + timedelta(seconds=i),
        "shopper_id": "s0",
        "product_id": "p_tea",
        "event_type": "view",
        **kw,
    }


def _count(factory):
    with factory() as s:
        return s.scalar(select(func.count()).select_from(BehaviorEvent))


def test_appends_are_idempotent_and_all_or_nothing(factory, tmp_path):
    import pandas as pd

    with transaction(factory) as s:
        assert record_events(s, [_event(i) for i in range(3)]) == 3
        assert (
            record_events(s, [_event(1), _event(3, event_type="search", product_id=None, query="tea")]) == 1
        )
        assert record_events(s, []) == 0
    for bad in (
        _event(9, event_type="like"),
        _event(9, product_id=None),
        _event(9, ts="2026-01-01"),
        {**_event(9), "price": 3},
        {k: v for k, v in _event(9).items() if k != "shopper_id"},
    ):
        with pytest.raises(ValidationError), transaction(factory) as s:
            record_events(s, [_event(10), bad])  # the good event in the batch is not kept either
    assert _count(factory) == 4
    with factory() as s:
        export_events(s, tmp_path / "ev")
    df = pd.read_parquet(tmp_path / "ev")
    assert sorted(df.event_id) == ["e0", "e1", "e2", "e3"]
    assert df.loc[df.event_id == "e3", "query"].item() == "tea" and df["quantity"].dtype == "int32"


def test_empty_log_exports_a_typed_empty_dataset(factory, tmp_path):
    import pandas as pd

    with factory() as s:
        export_events(s, tmp_path / "ev")
    df = pd.read_parquet(tmp_path / "ev")
    assert len(df) == 0 and str(df["ts"].dtype) == "datetime64[us, UTC]"


def test_invalid_identity_is_refused_and_changes_nothing(market):
    valid = make_id_number(0)
    wrong = valid[:-1] + ("1" if valid[-1] != "1" else "2")
    with pytest.raises(ValidationError) as err, transaction(market) as s:
        shoppers.register_identity(s, "s0", "New Name", wrong, keyring=Keyring(IDENTITY_KEY))
    assert err.value.code == "invalid_id_number" and wrong not in err.value.message
    with market() as s:
        ident = s.get(ShopperIdentity, "s0")
        assert ident.real_name == "Shopper 0" and ident.id_digest == id_digest(valid, IDENTITY_KEY)
        assert valid not in repr(ident) and valid[-4:] in repr(ident)
        view = shoppers.get_identity(s, "s0")
        assert valid not in str(view) and ident.id_digest not in str(view) and view.masked_name == "S********"


def test_a_coupon_id_is_stored_in_the_form_lookups_read(factory):
    """A storefront posting `ＳＡＶＥ１０` (full width) or ` SAVE‐10 ` (U+2010, spaces) names coupon SAVE10:
    the event is stored under the id every coupon lookup reads (`lookup_name`), or its redemptions and
    views would count apart."""
    sent = ["ＳＡＶＥ１０", " SAVE\u201010 ", "SAVE10", "  "]
    with transaction(factory) as s:
        record_events(s, [_event(i, coupon_id=c) for i, c in enumerate(sent)], client="k1")
    with factory() as s:
        stored = dict(s.execute(select(BehaviorEvent.event_id, BehaviorEvent.coupon_id)).all())
    expected = ["SAVE10", "SAVE-10", "SAVE10", None]
    assert stored == {client_event_id("k1", f"e{i}"): c for i, c in enumerate(expected)}


def test_the_ids_an_event_names_are_stored_as_lookups_read_them(market):
    """`ｐ_ｔｅａ` (full width) or `p_tea ` is product `p_tea`: the event names the stored row, as the
    coupon id does, so features and reports join it; an id blank once read names none (refused where
    the event needs it)."""
    sent = {"shopper_id": "\uff530", "product_id": "p_tea ", "campaign_id": " cmp\u20131", "coupon_id": None}
    with transaction(market) as s:
        record_events(s, [_event(1, **sent)], client="k1")
    with market() as s:
        row = s.execute(
            select(BehaviorEvent.shopper_id, BehaviorEvent.product_id, BehaviorEvent.campaign_id)
        ).one()
    assert tuple(row) == ("s0", "p_tea", "cmp-1")
    for blank in ({"shopper_id": " "}, {"product_id": "\u3000"}):
        with pytest.raises(ValidationError) as err, transaction(market) as s:
            record_events(s, [_event(2, **blank)], client="k1")
        assert err.value.code == "invalid_event"
