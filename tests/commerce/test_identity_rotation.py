"""Rotating the identity key (CROSSCART_IDENTITY_KEY) never splits a person in two: the annual customs
limit keeps counting what the person spent under the old key, and their rows move to the new key when
their number is seen again (registration or import)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from commerce.db import transaction
from commerce.errors import LimitExceeded, ValidationError
from commerce.identity import Keyring
from commerce.orders import AnnualSpend, Order
from commerce.services import orders, shoppers
from commerce.services.checkout import CartLine, checkout
from commerce.shoppers import ShopperIdentity
from tests.commerce.conftest import IDENTITY_KEY, NOW, make_id_number

OLD = Keyring(IDENTITY_KEY)  # the market fixture registered s0..s2 with it (version 1)
NEW = Keyring("rotated-identity-key-2", version=2, previous={1: IDENTITY_KEY})


def _spend_to_near_the_limit(market) -> str:
    """s0 pays 25,980 CNY this year under the old key; returns the old digest."""
    for lines in ([CartLine("p_tea", 50)],) * 4 + ([CartLine("p_watch", 1)],):
        with transaction(market) as s:
            order = checkout(s, "s0", lines, at=NOW)
            orders.pay_order(s, order.order_id, "pay", at=NOW)
    with market() as s:
        return s.get(ShopperIdentity, "s0").id_digest


def test_after_rotation_a_second_account_still_shares_the_annual_limit(market):
    old_digest = _spend_to_near_the_limit(market)
    with transaction(market) as s:  # the same person signs up again after the key rotated
        shoppers.register_identity(s, "s2", "Shopper 0", make_id_number(0), keyring=NEW)
    new_digest = NEW.digest(make_id_number(0))
    assert new_digest != old_digest
    with market() as s:
        # every row of the person moved to the new key: both accounts, the paid orders, the year's spend
        moved = [s.get(ShopperIdentity, sid) for sid in ("s0", "s2")]
        assert [(i.id_digest, i.key_version) for i in moved] == [(new_digest, 2), (new_digest, 2)]
        assert s.get(ShopperIdentity, "s1").key_version == 1  # others move only when their number is seen
        assert orders.annual_spend(s, new_digest, 2026) == Decimal("25980.00")
        assert s.scalar(select(func.count()).where(AnnualSpend.identity_digest == old_digest)) == 0
        assert s.scalar(select(func.count()).where(Order.identity_digest == old_digest)) == 0
    for shopper in ("s0", "s2"):
        with pytest.raises(LimitExceeded), transaction(market) as s:
            checkout(s, shopper, [CartLine("p_self", 1)], at=NOW)


def test_without_the_old_key_the_person_would_be_new(market):
    """What the keyring prevents: a rotated key that forgets the old one gives the person a fresh limit."""
    _spend_to_near_the_limit(market)
    forgetful = Keyring("rotated-identity-key-2", version=2)
    with transaction(market) as s:
        shoppers.register_identity(s, "s2", "Shopper 0", make_id_number(0), keyring=forgetful)
    with transaction(market) as s:
        checkout(s, "s2", [CartLine("p_self", 1)], at=NOW)  # accepted: the limit was split in two


def test_spend_under_both_keys_merges_within_the_limit(market):
    number = make_id_number(7)
    old, new = OLD.digest(number), NEW.digest(number)
    with transaction(market) as s:
        s.add_all([AnnualSpend(identity_digest=old, year=2026, amount=Decimal("20000.00")),
                   AnnualSpend(identity_digest=new, year=2026, amount=Decimal("9000.00")),
                   AnnualSpend(identity_digest=old, year=2025, amount=Decimal("100.00"))])  # fmt: skip
    with transaction(market) as s:
        assert shoppers.rekey_people(s, NEW, [number]) == 1
    with market() as s:
        assert orders.annual_spend(s, new, 2026) == Decimal("26000.00")  # capped: the person is at the limit
        assert orders.annual_spend(s, new, 2025) == Decimal("100.00")
        assert s.scalar(select(func.count()).where(AnnualSpend.identity_digest == old)) == 0
    with transaction(market) as s:  # nothing left under the old key: a second pass moves nothing
        assert shoppers.rekey_people(s, NEW, [number]) == 0


@pytest.mark.parametrize(
    "args",
    [
        {"key": ""},
        {"key": "k2", "version": 2, "previous": {2: "k1"}},
        {"key": "k2", "version": 2, "previous": {3: "k1"}},
        {"key": "k2", "version": 0},
        {"key": "k2", "version": 2, "previous": {1: "k2"}},
        {"key": "k2", "version": 2, "previous": {1: ""}},
    ],
)
def test_keyring_refuses_inconsistent_versions(args):
    with pytest.raises(ValidationError):
        Keyring(**args)


def test_keyring_digests():
    number = make_id_number(3)
    assert NEW.digest(number) == Keyring("rotated-identity-key-2").digest(number)
    assert NEW.previous_digests(number) == {1: OLD.digest(number)}
    three = Keyring("k3", version=3, previous={1: "k1", 2: "k2"})
    assert list(three.previous_digests(number)) == [2, 1]  # newest first
