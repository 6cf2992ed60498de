"""Crediting events to logged impressions, and the interleaving and off-policy reports built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.ab import offpolicy
from experiments.ab.impressions import attribute, interleaving_report, offpolicy_report

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def imp(unit, page, slot, product, minute, team=None, propensity=None):
    return {
        "unit_id": unit,
        "page_id": page,
        "slot": slot,
        "product_id": product,
        "ts": T0 + pd.Timedelta(minutes=minute),
        "team": team,
        "propensity": propensity,
    }


def ev(unit, product, kind, minute):
    return {
        "unit_id": unit,
        "product_id": product,
        "event_type": kind,
        "ts": T0 + pd.Timedelta(minutes=minute),
    }


def test_attribution_by_hand():
    impressions = pd.DataFrame(
        [
            imp("u1", "a", 0, "p1", 0),
            imp("u1", "a", 1, "p2", 0),
            imp("u1", "b", 0, "p1", 10),
            imp("u2", "c", 0, "p1", 0),
        ]
    )
    events = pd.DataFrame(
        [
            ev("u1", "p1", "click", 12),  # latest impression of p1 to u1 before it: page b
            ev("u1", "p2", "purchase", 5),  # page a
            ev("u2", "p1", "click", 60 * 30),  # outside the 24 h window
            ev("u2", "p9", "click", 1),  # never shown
        ]
    )
    out = attribute(impressions, events)
    assert out["click"].tolist() == [0, 0, 1, 0]
    assert out["purchase"].tolist() == [0, 1, 0, 0]
    with pytest.raises(ValueError, match="product_id"):
        attribute(impressions, events.drop(columns="product_id"))


def test_interleaving_report_by_hand():
    clicks = [(2, 0), (1, 0), (0, 1), (1, 1), (0, 0)]  # (champion, challenger) clicks per shopper
    rows = []
    for u in range(len(clicks)):
        for slot in range(4):
            team = "champion" if slot % 2 == 0 else "challenger"
            rows.append(imp(f"u{u}", f"pg{u}", slot, f"p{slot}", 0, team=team))
    att = attribute(pd.DataFrame(rows), pd.DataFrame(columns=["unit_id", "product_id", "event_type", "ts"]))
    # champion's items sit at slots 0 and 2, the challenger's at 1 and 3
    for u, (a_clicks, b_clicks) in enumerate(clicks):
        for slot in (0, 2)[:a_clicks]:
            att.loc[(att.unit_id == f"u{u}") & (att.slot == slot), "click"] = 1
        for slot in (1, 3)[:b_clicks]:
            att.loc[(att.unit_id == f"u{u}") & (att.slot == slot), "click"] = 1
    out = interleaving_report(att)
    assert out["teams"] == {"A": "challenger", "B": "champion"}  # sorted names
    # champion wins u0, u1; challenger wins u2; u3 ties; u4 inactive: Delta(A=challenger) = 1.5/4 - 0.5
    assert (out["wins_a"], out["wins_b"], out["ties"], out["active"]) == (1, 2, 1, 4)
    assert out["delta"] == pytest.approx(-0.125)
    assert out["clicks"] == {"champion": 4, "challenger": 2} and out["winner"] is None


def test_offpolicy_report_matches_the_array_estimator():
    rng = np.random.default_rng(3)
    k, pool, pages = 2, 6, 4000
    rows = []
    logging_top = np.tile([0, 1], (pages, 1))
    shown, prop, _ = offpolicy.sample_explore_pages(logging_top, pool, 0.4, rng)
    clicks = rng.random(shown.shape) < 0.3 * (shown >= 3) + 0.05
    for i in range(pages):
        for s in range(k):
            r = imp(f"u{i % 50}", f"pg{i}", s, f"p{shown[i, s]}", i, propensity=prop[i, s])
            r["click"], r["purchase"] = int(clicks[i, s]), 0
            rows.append(r)
    rows.append(imp("u0", "short", 0, "p0", 0, propensity=0.5) | {"click": 0, "purchase": 0})
    candidate = {f"u{j}": ["p3", "p4", "p5"] for j in range(50)}
    out = offpolicy_report(pd.DataFrame(rows), candidate)
    assert out["pages"] == pages and out["pages_left_out"] == 1 and out["slots"] == 2
    direct = offpolicy.estimate(shown, prop, clicks.astype(float), np.tile([3, 4], (pages, 1)))
    assert out["ctr"]["ips"] == pytest.approx(direct["ips"])
    assert out["ctr"]["snips"] == pytest.approx(direct["snips"])
    lo, hi = out["ctr"]["dr_ci"]
    assert lo <= 0.35 <= hi
    with pytest.raises(ValueError, match="at least 2"):
        offpolicy_report(pd.DataFrame(rows), {u: ["p3"] for u in candidate})
