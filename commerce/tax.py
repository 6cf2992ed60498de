"""Cross-border retail import tax and limits (China), line by line in Decimal CNY.

Within the limits the tariff is 0 and VAT plus consumption tax are charged at 70%:
    tax = value x (vat + ct) / (1 - ct) x 0.7
A single indivisible item above the per-order limit pays the general-trade rate instead:
    tariff = value x t;  ct_amount = (value + tariff) / (1 - ct) x ct
    vat_amount = (value + tariff + ct_amount) x vat
Each line's tax is rounded to the fen (ROUND_HALF_UP) once, so an order total is exactly the sum of its lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from commerce.errors import LimitExceeded, ValidationError
from commerce.sqltypes import round_fen

ORDER_LIMIT = Decimal("5000.00")
ANNUAL_LIMIT = Decimal("26000.00")
CROSS_BORDER_SHARE = Decimal("0.7")
CROSS_BORDER = "cross_border"
GENERAL_TRADE = "general_trade"


@dataclass(frozen=True)
class TaxRates:
    vat: Decimal
    consumption: Decimal
    tariff: Decimal

    def __post_init__(self) -> None:
        for name in ("vat", "consumption", "tariff"):
            rate = getattr(self, name)
            if not Decimal(0) <= rate < Decimal(1):
                raise ValidationError(f"{name} rate must be in [0, 1), got {rate}", code="invalid_rate")


def cross_border_tax(value: Decimal, rates: TaxRates) -> Decimal:
    """Tax on a line's dutiable value inside the limits (tariff 0, 70% of VAT + consumption tax)."""
    ct = rates.consumption
    return round_fen(value * (rates.vat + ct) / (1 - ct) * CROSS_BORDER_SHARE)


def general_trade_tax(value: Decimal, rates: TaxRates) -> Decimal:
    """Full tariff + consumption tax + VAT, the regime for a single item above the order limit."""
    tariff = value * rates.tariff
    ct_amount = (value + tariff) / (1 - rates.consumption) * rates.consumption
    vat_amount = (value + tariff + ct_amount) * rates.vat
    return round_fen(tariff + ct_amount + vat_amount)


def order_regime(line_values: list[tuple[Decimal, int]]) -> str:
    """Which tax regime an order falls under, given (net value, quantity) per line; raise if refused.

    Goods value above 5,000 CNY is allowed only for one line holding one indivisible item.
    """
    total = sum((value for value, _ in line_values), Decimal(0))
    if total <= ORDER_LIMIT:
        return CROSS_BORDER
    if len(line_values) == 1 and line_values[0][1] == 1:
        return GENERAL_TRADE
    raise LimitExceeded(
        f"order goods value {total} CNY exceeds the {ORDER_LIMIT} CNY cross-border limit per order; "
        "split it into several orders",
        code="order_limit_exceeded",
    )


def line_tax(value: Decimal, rates: TaxRates, regime: str) -> Decimal:
    if regime == CROSS_BORDER:
        return cross_border_tax(value, rates)
    if regime == GENERAL_TRADE:
        return general_trade_tax(value, rates)
    raise ValidationError(f"unknown tax regime {regime!r}")


def allocate(amount: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split `amount` over lines in proportion to `weights`, in fen, summing exactly to `amount`.

    Largest-remainder rounding: every share is within one fen of its exact proportion.
    """
    total = sum(weights, Decimal(0))
    if not weights or total <= 0:
        raise ValidationError("cannot allocate over empty or zero weights")
    fen_total = int(round_fen(amount) * 100)
    exact = [Decimal(fen_total) * w / total for w in weights]
    shares = [int(x) for x in exact]  # floor: weights and amount are non-negative
    leftover = fen_total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (exact[i] - shares[i], -i), reverse=True)
    for i in order[:leftover]:
        shares[i] += 1
    return [Decimal(s) / 100 for s in shares]
