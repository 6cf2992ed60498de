"""The sponsored-results auction: generalized second price (Edelman, Ostrovsky, Schwarz 2007; Varian 2007)
ranked by bid x quality, plus budget pacing. Pure functions: callers bring bids, predicted click rates and
relevance; nothing here touches the database.

Prices are exact: scores compare as fractions, and a winner pays the least whole fen (0.01 CNY) whose
score beats the next ad's, never more than its bid and never less than the reserve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

FEN = Decimal("0.01")


@dataclass(frozen=True)
class AdCandidate:
    campaign_id: str
    keyword_id: int
    product_id: str
    bid: Decimal  # CNY per click
    quality: float  # predicted click rate in (0, 1]
    relevance: float  # how well the product matches the query, in [0, 1]

    @property
    def score(self) -> Fraction:
        return Fraction(self.bid) * Fraction(self.quality)


@dataclass(frozen=True)
class AdWin:
    candidate: AdCandidate
    slot: int  # 1 = first sponsored slot
    price: Decimal  # charged per click


def _least_fen_above(value: Fraction) -> Decimal:
    """The smallest multiple of 0.01 strictly greater than `value`."""
    return Decimal(math.floor(value * 100) + 1) * FEN


def run_auction(
    candidates: Iterable[AdCandidate], *, slots: int, reserve: Decimal, relevance_floor: float
) -> list[AdWin]:
    """Fill up to `slots` sponsored slots.

    Eligible: relevance >= floor, bid >= reserve, quality > 0; one entry per product (its best score).
    Ranked by bid x quality (ties: higher bid, then ids). Winner i pays
    min(bid_i, max(reserve, least fen with price x q_i > bid_(i+1) x q_(i+1))); the runner-up is the
    next eligible ad, a winner without one pays the reserve.
    """
    if slots < 0 or reserve <= 0:
        raise ValueError("slots must be >= 0 and the reserve price positive")
    best: dict[str, AdCandidate] = {}
    for c in candidates:
        if c.relevance < relevance_floor or c.bid < reserve or not c.quality > 0:
            continue
        held = best.get(c.product_id)
        if held is None or (c.score, c.bid) > (held.score, held.bid):
            best[c.product_id] = c
    ranked = sorted(
        best.values(), key=lambda c: (-c.score, -c.bid, c.campaign_id, c.keyword_id, c.product_id)
    )
    wins = []
    for i, c in enumerate(ranked[:slots]):
        if i + 1 < len(ranked):
            runner_up = ranked[i + 1]
            needed = _least_fen_above(runner_up.score / Fraction(c.quality))
            price = min(c.bid, max(reserve, needed))
        else:
            price = reserve
        wins.append(AdWin(c, i + 1, price))
    return wins


def pacing_probability(spent: Decimal, budget: Decimal, elapsed: float) -> float:
    """Chance a campaign enters an auction, so its budget lasts the day: 1 while its spend is at or below
    the straight line budget x elapsed; above it, remaining budget / remaining on-track budget; 0 once spent.
    `elapsed` is the fraction of the day gone, in [0, 1)."""
    if budget <= 0 or spent >= budget:
        return 0.0
    elapsed = min(max(elapsed, 0.0), 1.0)
    if float(spent) <= float(budget) * elapsed:  # on or behind the line (asked directly: no rounding)
        return 1.0
    remaining_time = max(1e-9, 1.0 - elapsed)
    return min(1.0, float(budget - spent) / (float(budget) * remaining_time))
