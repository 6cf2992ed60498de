"""Money and tax arithmetic (property-based) and resident ID validation/hashing. No database."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commerce.errors import LimitExceeded, ValidationError
from commerce.identity import check_char, id_digest, normalize_id_number
from commerce.sqltypes import to_money
from commerce.tax import (
    CROSS_BORDER,
    GENERAL_TRADE,
    TaxRates,
    allocate,
    cross_border_tax,
    general_trade_tax,
    order_regime,
)

fen = st.integers(min_value=1, max_value=10_000_000).map(lambda f: Decimal(f) / 100)
rate = st.integers(min_value=0, max_value=5000).map(lambda r: Decimal(r) / 10_000)
rates = st.builds(TaxRates, vat=rate, consumption=rate, tariff=rate)


def test_known_values():
    food = TaxRates(Decimal("0.13"), Decimal("0"), Decimal("0.10"))
    assert cross_border_tax(Decimal("100.00"), food) == Decimal("9.10")  # 9.1% (REFERENCES.md)
    cosmetics = TaxRates(Decimal("0.13"), Decimal("0.15"), Decimal("0.10"))
    assert cross_border_tax(Decimal("1000.00"), cosmetics) == Decimal("230.59")  # 1000 x .28 / .85 x .7
    # general trade: tariff 100, CT 1100/.85 x .15 = 194.1176, VAT (1100 + 194.1176) x .13 = 168.2353
    assert general_trade_tax(Decimal("1000.00"), cosmetics) == Decimal("462.35")
    assert cross_border_tax(Decimal("0.05"), food) == Decimal("0.00")  # 0.00455 rounds down
    assert cross_border_tax(Decimal("0.55"), food) == Decimal("0.05")  # 0.05005 rounds up (half up)


@given(value=fen, r=rates)
def test_line_tax_is_the_formula_rounded_half_up_to_the_fen(value, r):
    tax = cross_border_tax(value, r)
    exact_fen = (
        Fraction(value)
        * (Fraction(r.vat) + Fraction(r.consumption))
        / (1 - Fraction(r.consumption))
        * Fraction(7, 10)
        * 100
    )
    assert tax == Decimal(math.floor(exact_fen + Fraction(1, 2))) / 100  # exact rational, half up
    assert tax >= 0
    assert general_trade_tax(value, r) >= tax  # full rates never undercut the 70% cross-border rate


@given(amount=fen, weights=st.lists(fen, min_size=1, max_size=10))
def test_allocation_is_proportional_within_a_fen(amount, weights):
    shares = allocate(amount, weights)
    total = sum(weights)
    assert sum(shares) == amount
    for s, w in zip(shares, weights, strict=True):
        assert abs(s - amount * w / total) < Decimal("0.01")


@given(values=st.lists(st.tuples(fen, st.integers(1, 5)), min_size=1, max_size=6))
def test_regime_follows_the_5000_rule(values):
    total = sum(v for v, _ in values)
    if total <= 5000:
        assert order_regime(values) == CROSS_BORDER
    elif len(values) == 1 and values[0][1] == 1:
        assert order_regime(values) == GENERAL_TRADE
    else:
        with pytest.raises(LimitExceeded):
            order_regime(values)


@pytest.mark.parametrize("bad", [1.5, "abc", "NaN", "Infinity"])
def test_money_refuses_floats_and_non_numbers(bad):
    with pytest.raises(ValidationError):
        to_money(bad)


def test_resident_id_check_character_and_hashing():
    assert check_char("11010519491231002") == "X"
    assert normalize_id_number("11010519491231002x") == "11010519491231002X"
    for bad in ("110105194912310021", "1101051949123100", "A1010519491231002X", "11010519491231002Y"):
        with pytest.raises(ValidationError) as err:
            normalize_id_number(bad)
        assert bad not in str(err.value)  # never echo the number back
    digest = id_digest("11010519491231002X", "k1")
    assert len(digest) == 64 and "1949" not in digest
    assert digest == id_digest("11010519491231002x", "k1") != id_digest("11010519491231002X", "k2")


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_every_computed_check_character_validates(first17):
    number = first17 + check_char(first17)
    assert normalize_id_number(number) == number
    wrong = next(c for c in "0123456789X" if c != number[-1])
    with pytest.raises(ValidationError):
        normalize_id_number(first17 + wrong)


def test_the_annual_limit_counts_calendar_years_in_china_time():
    from datetime import UTC, datetime

    from commerce.services.checkout import customs_year

    assert customs_year(datetime(2025, 12, 31, 15, 59, tzinfo=UTC)) == 2025
    assert customs_year(datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) == 2026  # midnight in Beijing
