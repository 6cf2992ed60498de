"""Team-draft interleaving of two rankers in one list, credit by clicks and purchases, and the analysis.

Team draft (Radlinski, Kurup and Joachims 2008; the round form of Chapelle et al. 2012): in each round
a fair coin decides which ranker picks first, then each picks its highest item not yet in the list.
Every shown item remembers its team; a click (and, weighted, a purchase) credits that team. Per shopper
the ranker with more credit wins; the preference is Delta = (wins_A + ties / 2) / shoppers - 1/2 over
shoppers with any credited interaction, with a normal-approximation interval on the per-shopper score
and a sign test of wins against losses.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats

TEAMS = ("A", "B")


def team_draft(
    ranking_a: Sequence[Hashable], ranking_b: Sequence[Hashable], n: int, rng: random.Random
) -> tuple[list[Hashable], list[str]]:
    """One interleaved list of at most `n` items and the team ("A"/"B") that placed each."""
    if n < 1:
        raise ValueError("n must be at least 1")
    shown: list[Hashable] = []
    teams: list[str] = []
    taken: set[Hashable] = set()
    pointers = {"A": 0, "B": 0}
    rankings = {"A": list(ranking_a), "B": list(ranking_b)}
    while len(shown) < n:
        order = ("A", "B") if rng.random() < 0.5 else ("B", "A")
        placed = False
        for team in order:
            ranking, i = rankings[team], pointers[team]
            while i < len(ranking) and ranking[i] in taken:
                i += 1
            pointers[team] = i + 1
            if i < len(ranking) and len(shown) < n:
                shown.append(ranking[i])
                teams.append(team)
                taken.add(ranking[i])
                placed = True
        if not placed:  # both rankings exhausted
            break
    return shown, teams


def team_draft_batch(
    a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """`team_draft` for many shoppers at once: rows of item indices (best first, -1 = none).

    Returns (items, team) of shape (rows, n): team 0 for A, 1 for B, item -1 where nothing was left.
    """
    a, b = np.asarray(a), np.asarray(b)
    rows = np.arange(len(a))
    items = np.full((len(a), n), -1, dtype=np.int64)
    team = np.zeros((len(a), n), dtype=np.int8)
    ptr = np.zeros((2, len(a)), dtype=np.int64)
    filled = 0
    rankings = (a, b)
    while filled < n:
        a_first = rng.random(len(a)) < 0.5
        for slot_in_round in range(2):
            if filled >= n:
                break
            picker = np.where(a_first, slot_in_round, 1 - slot_in_round)  # 0 = A picks now
            choice = np.full(len(a), -1, dtype=np.int64)
            for t in (0, 1):
                sel = rows[picker == t]
                ranking, p = rankings[t], ptr[t]
                while len(sel):
                    at = np.minimum(p[sel], ranking.shape[1] - 1)
                    cand = np.where(p[sel] < ranking.shape[1], ranking[sel, at], -1)
                    dup = (cand >= 0) & (items[sel, :filled] == cand[:, None]).any(axis=1)
                    done = sel[~dup]
                    choice[done] = cand[~dup]
                    p[done] += 1
                    p[sel[dup]] += 1
                    sel = sel[dup]
            items[:, filled] = choice
            team[:, filled] = picker
            filled += 1
    return items, team


def credit(team: np.ndarray, clicks: np.ndarray, purchases: np.ndarray, purchase_weight: float = 1.0):
    """Per-shopper credit of A and B: clicks plus `purchase_weight` x purchases on each team's items."""
    team, clicks, purchases = (np.asarray(x) for x in (team, clicks, purchases))
    value = clicks + purchase_weight * purchases
    credit_a = np.where(team == 0, value, 0).sum(axis=-1)
    credit_b = np.where(team == 1, value, 0).sum(axis=-1)
    return credit_a.astype(float), credit_b.astype(float)


def preference(credit_a: np.ndarray, credit_b: np.ndarray, alpha: float = 0.05) -> dict:
    """Delta (> 0: A preferred), its CI, the sign-test p-value and the decision."""
    credit_a, credit_b = np.asarray(credit_a, float), np.asarray(credit_b, float)
    active = (credit_a + credit_b) > 0
    wins_a = int((credit_a > credit_b).sum())
    wins_b = int((credit_b > credit_a).sum())
    ties = int((active & (credit_a == credit_b)).sum())
    n = wins_a + wins_b + ties
    out = {"shoppers": int(len(credit_a)), "active": n, "wins_a": wins_a, "wins_b": wins_b, "ties": ties}
    if n < 2:
        return {**out, "delta": 0.0, "ci": [float("nan"), float("nan")], "p_value": 1.0, "winner": None}
    score = np.concatenate([np.ones(wins_a), np.zeros(wins_b), np.full(ties, 0.5)])
    delta = float(score.mean() - 0.5)
    half = float(stats.norm.isf(alpha / 2) * score.std(ddof=1) / np.sqrt(n))
    p = float(stats.binomtest(wins_a, wins_a + wins_b).pvalue) if wins_a + wins_b else 1.0
    winner = ("A" if delta > 0 else "B") if p < alpha else None
    return {**out, "delta": delta, "ci": [delta - half, delta + half], "p_value": p, "winner": winner}
