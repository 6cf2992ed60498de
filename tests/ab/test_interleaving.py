"""Team-draft interleaving, credit and preference against hand-computed cases."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from experiments.ab import interleaving as il


class Coins:
    """A stand-in rng whose random() returns the given values (< 0.5: A picks first)."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self, size=None):
        if size is None:
            return self.values.pop(0)
        return np.full(size, self.values.pop(0))


def test_team_draft_by_hand():
    # Round 1: A first -> A takes 1, B takes 2. Round 2: B first -> B skips 1, takes 5; A skips 2, takes 3.
    items, teams = il.team_draft([1, 2, 3, 4], [2, 1, 5, 6], 4, Coins(0.1, 0.9))
    assert items == [1, 2, 5, 3] and teams == ["A", "B", "B", "A"]
    # An odd length stops in the middle of a round; identical rankings still alternate teams.
    items, teams = il.team_draft([7, 8, 9], [7, 8, 9], 3, Coins(0.9, 0.9))
    assert items == [7, 8, 9] and teams == ["B", "A", "B"]


def test_team_draft_stops_when_both_rankings_run_out():
    items, teams = il.team_draft([1], [1, 2], 5, random.Random(0))
    assert sorted(items) == [1, 2] and len(teams) == 2


def test_batch_matches_the_reference_by_hand():
    a = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    b = np.array([[2, 1, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]])
    items, team = il.team_draft_batch(a, b, 4, Coins(0.1, 0.9))
    assert items[0].tolist() == [1, 2, 5, 3] and team[0].tolist() == [0, 1, 1, 0]
    assert items[1].tolist() == [1, 2, 3, 4] and team[1].tolist() == [0, 1, 1, 0]


def test_batch_never_repeats_and_balances_teams():
    rng = np.random.default_rng(0)
    a = np.array([rng.permutation(30) for _ in range(500)])
    b = np.array([rng.permutation(30) for _ in range(500)])
    items, team = il.team_draft_batch(a, b, 10, rng)
    assert (items >= 0).all()
    assert all(len(set(row)) == 10 for row in items.tolist())
    assert (team.sum(axis=1) == 5).all()  # full rounds: each team places half of an even list


def test_credit_and_preference_by_hand():
    team = np.array([[0, 1, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    clicks = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]])
    purchases = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    ca, cb = il.credit(team, clicks, purchases, purchase_weight=2.0)
    assert ca.tolist() == [4.0, 0.0, 1.0, 0.0] and cb.tolist() == [0.0, 1.0, 1.0, 0.0]
    out = il.preference(ca, cb)
    # shopper 1 A wins, 2 B wins, 3 tie, 4 inactive: Delta = (1 + 0.5) / 3 - 0.5 = 0
    assert (out["wins_a"], out["wins_b"], out["ties"], out["active"]) == (1, 1, 1, 3)
    assert out["delta"] == pytest.approx(0.0) and out["winner"] is None


def test_preference_ci_and_sign_test_by_hand():
    ca = np.array([1.0] * 70 + [0.0] * 30)
    cb = np.array([0.0] * 70 + [1.0] * 30)
    out = il.preference(ca, cb)
    assert out["delta"] == pytest.approx(0.2)
    half = 1.959964 * np.std([1] * 70 + [0] * 30, ddof=1) / 10
    assert out["ci"] == pytest.approx([0.2 - half, 0.2 + half], abs=1e-6)
    assert out["p_value"] == pytest.approx(stats.binomtest(70, 100).pvalue)
    assert out["winner"] == "A"
    assert il.preference(cb, ca)["winner"] == "B"
