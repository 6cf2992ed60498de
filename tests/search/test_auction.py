"""GSP auction and pacing properties (hypothesis) plus hand-checked examples."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from commerce.services.auction import AdCandidate, pacing_probability, run_auction

FEN = Decimal("0.01")
RESERVE = Decimal("0.30")


def cand(i: int, bid: str, quality: float, relevance: float = 1.0, product: str | None = None) -> AdCandidate:
    return AdCandidate(f"c{i}", i, product or f"p{i}", Decimal(bid), quality, relevance)


def test_worked_example():
    # scores: a 2.00 x 0.10 = 0.200, b 3.00 x 0.05 = 0.150, c 1.00 x 0.10 = 0.100
    wins = run_auction(
        [cand(1, "2.00", 0.10), cand(2, "3.00", 0.05), cand(3, "1.00", 0.10)],
        slots=2,
        reserve=RESERVE,
        relevance_floor=0.2,
    )
    assert [(w.candidate.product_id, w.slot) for w in wins] == [("p1", 1), ("p2", 2)]
    # a pays the least fen beating 0.150 / 0.10 = 1.50 -> 1.51; b: 0.100 / 0.05 = 2.00 -> 2.01
    assert [w.price for w in wins] == [Decimal("1.51"), Decimal("2.01")]


def test_floor_reserve_and_one_ad_per_product():
    wins = run_auction(
        [
            cand(1, "5.00", 0.1, relevance=0.1),  # below the relevance floor
            cand(2, "0.20", 0.9),  # bid below the reserve
            cand(3, "1.00", 0.1, product="px"),
            cand(4, "2.00", 0.1, product="px"),  # same product, better score: kept
        ],
        slots=3,
        reserve=RESERVE,
        relevance_floor=0.2,
    )
    assert [(w.candidate.keyword_id, w.price) for w in wins] == [(4, RESERVE)]  # alone: pays the reserve


bids = st.decimals(min_value=Decimal("0.30"), max_value=Decimal("20.00"), places=2)
quality = st.floats(min_value=0.001, max_value=1.0, allow_nan=False)
relevance = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
candidates = st.lists(st.tuples(bids, quality, relevance), min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(candidates, st.integers(min_value=0, max_value=5), st.floats(min_value=0.0, max_value=0.8))
def test_gsp_properties(rows, slots, floor):
    cands = [AdCandidate(f"c{i}", i, f"p{i}", b, q, r) for i, (b, q, r) in enumerate(rows)]
    wins = run_auction(cands, slots=slots, reserve=RESERVE, relevance_floor=floor)
    eligible = sorted(
        (c for c in cands if c.relevance >= floor), key=lambda c: (-c.score, -c.bid, c.campaign_id)
    )
    assert len(wins) == min(slots, len(eligible))
    assert [w.candidate for w in wins] == eligible[: len(wins)]  # ranked by bid x quality
    assert [w.slot for w in wins] == list(range(1, len(wins) + 1))
    for i, w in enumerate(wins):
        c = w.candidate
        assert RESERVE <= w.price <= c.bid
        assert w.price == w.price.quantize(FEN)
        if i + 1 < len(eligible):
            nxt = eligible[i + 1].score
            # the price keeps the position (or is the whole bid, which already does) ...
            assert Fraction(w.price) * Fraction(c.quality) > nxt or w.price == c.bid
            # ... and one fen less would not, unless the reserve or the bid bounds it
            if RESERVE < w.price < c.bid:
                assert Fraction(w.price - FEN) * Fraction(c.quality) <= nxt
        else:
            assert w.price == RESERVE


@given(
    st.decimals(min_value=Decimal("1"), max_value=Decimal("1000"), places=2),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=0.999),
)
def test_pacing_probability(budget, spent_share, elapsed):
    spent = (budget * Decimal(str(spent_share))).quantize(FEN)
    p = pacing_probability(spent, budget, elapsed)
    assert 0.0 <= p <= 1.0
    if spent >= budget:
        assert p == 0.0
    if float(spent) <= float(budget) * elapsed:  # on or behind the straight line: always bid
        assert p == 1.0
