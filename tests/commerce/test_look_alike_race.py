"""Two look-alike names created at the same moment: the second waits for the first's transaction and is
refused (`unlike_stored`). On PostgreSQL both read the stored names before either committed, so `PAY`
and a Cyrillic `РАУ` were both stored; SQLite's BEGIN IMMEDIATE already made the second wait."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.services import merchants
from commerce.services.catalog import register_location
from commerce.services.coupons import CouponInput, create_coupon


def _create(factory, coupon_id: str) -> str:
    with transaction(factory) as s:
        return create_coupon(s, CouponInput(kind="amount_off", value="1", coupon_id=coupon_id)).coupon_id


def test_a_look_alike_created_meanwhile_waits_and_is_refused(factory):
    with ThreadPoolExecutor(1) as pool, transaction(factory) as first:
        create_coupon(first, CouponInput(kind="amount_off", value="1", coupon_id="PAY"))
        second = pool.submit(_create, factory, "\u0420\u0410\u0423")  # РАУ
        time.sleep(1.0)
        assert not second.done()  # waiting for the first transaction
        first.commit()
        with pytest.raises(ValidationError) as err:
            second.result(timeout=30)
    assert err.value.code == "confusable_name"
    assert _create(factory, "\u0441\u043a\u0438\u0434\u043a\u0430") == "скидка"  # no look-alike: no wait


def _register(factory, location: str) -> str:
    with transaction(factory) as s:
        return register_location(s, location, "bonded", "m1")


def test_a_look_alike_location_registered_meanwhile_waits_and_is_refused(factory):
    """Stock locations too (`register_location`, `0041_location_skeletons`): Cyrillic `НН-1` named while
    `HH-1` is being registered waited for it and is refused; it was registered beside it."""
    with transaction(factory) as s:
        merchants.apply(s, merchants.MerchantApplication("M", "JP", "LIC-1", ["B"], merchant_id="m1"))
    with ThreadPoolExecutor(1) as pool, transaction(factory) as first:
        register_location(first, "HH-1", "bonded", "m1")
        second = pool.submit(_register, factory, "\u041d\u041d-1")  # НН-1
        time.sleep(1.0)
        assert not second.done()  # waiting for the first transaction
        first.commit()
        with pytest.raises(ValidationError) as err:
            second.result(timeout=30)
    assert err.value.code == "confusable_name" and "'HH-1'" in str(err.value)
    assert _register(factory, "\u0421\u043a\u043b\u0430\u0434-1") == "Склад-1"  # no look-alike: no wait
