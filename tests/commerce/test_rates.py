"""Rate cards: chargeable weight, cost per partner and zone, seeding, merchants' shipping rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from commerce.db import transaction
from commerce.errors import NotFound, ValidationError
from commerce.logistics import RateCard, zone_of
from commerce.services import logistics


def test_zone_of_groups_provinces_and_unknown_regions_pay_the_remote_rate():
    assert zone_of("Zhejiang") == "east" and zone_of("Sichuan") == "west" and zone_of("Xinjiang") == "remote"
    assert zone_of("Atlantis") == "remote"


def test_chargeable_weight_is_the_larger_of_actual_and_volumetric():
    assert logistics.chargeable_weight_g(800, 3000, 1) == 800  # 3000 cm3 / 6 = 500 g volumetric
    assert logistics.chargeable_weight_g(300, 12_000, 2) == 4000  # bulky: 24,000 cm3 -> 4 kg
    assert logistics.chargeable_weight_g(250, None, 3) == 750
    with pytest.raises(ValidationError):
        logistics.chargeable_weight_g(0, None)


def test_rate_cost_matches_a_hand_computed_price():
    card = RateCard(
        first_weight_g=1000, first_price=Decimal("10.00"), additional_unit_g=500,
        additional_price=Decimal("3.00"), surcharge_rate=Decimal("0.05"), discount_rate=Decimal("0.20"),
    )  # fmt: skip
    # 2.2 kg: first kg + 3 further half-kilos = 19.00, x 1.05 x 0.8 = 15.96
    assert logistics.rate_cost(card, 2200) == Decimal("15.96")
    assert logistics.rate_cost(card, 1000) == Decimal("8.40")


def test_shipping_costs_price_every_partner_of_the_mode_cheapest_first(market):
    with transaction(market) as s:
        east = logistics.shipping_costs(s, "bonded", "Zhejiang", 1500)
        assert [c.partner_id for c in east] == ["yto-bonded", "cainiao-bonded", "sf-bonded"]
        assert all(c.zone == "east" and c.chargeable_weight_g == 1500 for c in east)
        # cainiao: (10 + 3) x 1.05 x 0.8 = 10.92
        assert east[1].cost == Decimal("10.92")
        west = logistics.shipping_costs(s, "bonded", "Sichuan", 1500)
        assert all(w.cost > e.cost for w, e in zip(west, east, strict=True))  # farther costs more
        mail = logistics.product_shipping_costs(s, "p_mail", "Beijing", quantity=2)
        assert {c.partner_id for c in mail} == {"dhl-express", "cainiao-global", "ems-intl"}
        assert mail[0].chargeable_weight_g == 1000  # the default 500 g per unit
        with pytest.raises(ValidationError):
            logistics.shipping_costs(s, "by-sea", "Beijing", 100)
        with pytest.raises(NotFound):
            logistics.product_shipping_costs(s, "p_missing", "Beijing")


def test_seeding_rate_cards_is_idempotent(market):
    with transaction(market) as s:
        before = len(logistics.shipping_costs(s, "direct_mail", "Beijing", 500))
        logistics.seed_default_partners(s)
        assert len(logistics.shipping_costs(s, "direct_mail", "Beijing", 500)) == before == 3


def test_shipping_rule_is_one_partner_or_a_promise(market):
    with transaction(market) as s:
        rule, old = logistics.set_shipping_rule(s, "m_ok", max_days=3)
        assert (rule.partner_id, rule.max_days, old) == (None, 3, None)
        rule, old = logistics.set_shipping_rule(s, "m_ok", partner_id="sf-bonded")
        assert (rule.partner_id, rule.max_days) == ("sf-bonded", None)
        assert old == {"partner_id": None, "max_days": 3}
        assert logistics.get_shipping_rule(s, "m_ok").partner_id == "sf-bonded"
        for bad in ({}, {"partner_id": "sf-bonded", "max_days": 3}, {"max_days": 0}, {"max_days": 99}):
            with pytest.raises(ValidationError):
                logistics.set_shipping_rule(s, "m_ok", **bad)
        with pytest.raises(NotFound):
            logistics.set_shipping_rule(s, "m_ok", partner_id="pigeon-post")
        with pytest.raises(NotFound):
            logistics.set_shipping_rule(s, "m_nobody", max_days=3)
