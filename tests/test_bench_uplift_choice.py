"""`bench.uplift_choice --reuse`: a stored pair is copied only when today's nested cross-validation
and `decide` make the same choice from its stored summaries; any other pair, or another run setup, is
re-run."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest

from bench.uplift_choice import _reusable


def _cv(blend_gap: float, leads: bool = True) -> dict:
    """Two candidates' summaries: `t` beats `blend` by `blend_gap` standard errors, on both metrics;
    with `leads`, the blend's lead over each (as `one_se_choice` with reference="blend" stores it)."""
    cv = {
        "blend": {"qini_auc": 0.10, "uplift@30": 0.02, "combined": -1.0, "gap_to_best": blend_gap,
                  "gap_se": 1.0, "level_with_best": blend_gap <= 1},
        "t": {"qini_auc": 0.12, "uplift@30": 0.03, "combined": 1.0, "gap_to_best": 0.0, "gap_se": 0.0,
              "level_with_best": True},
    }  # fmt: skip
    if leads:
        cv["blend"].update(lead_of_reference=0.0, lead_of_reference_se=0.0)
        cv["t"].update(lead_of_reference=-blend_gap, lead_of_reference_se=1.0)
    return cv


def _pair(seed: int, outcome: str, chosen: str, cv: dict, rule: str = "rule", nested=None) -> dict:
    """A stored pair; `nested` is the rules' outer summary (None: nested cross-validation skipped)."""
    return {"seed": seed, "arm": "Mens E-Mail", "outcome": outcome, "chosen": chosen, "auto_cv": cv,
            "rule": rule, "auto_nested": nested, "by_rule": {}}  # fmt: skip


# a file with a gate: the funnel default in the blend's place, `t` level with it (1 SE)
GATED = {"funnel-blend" if k == "blend" else k: v for k, v in _cv(1.0).items()}

# the outer folds: `default` (never leave the blend) beats today's rule by 3 SE on both metrics
NESTED = {
    "rule": {"qini_auc": 0.10, "uplift@30": 0.02, "combined": -1.0, "gap_to_best": 3.0, "gap_se": 1.0},
    "default": {"qini_auc": 0.12, "uplift@30": 0.03, "combined": 1.0, "gap_to_best": 0.0, "gap_se": 0.0},
}


def test_reuse_copies_only_pairs_whose_choice_is_unchanged(tmp_path):
    old = tmp_path / "old.json"
    pairs = [
        # not beaten (1 SE < 2), but the anchor t is level with the blend: averaged in, as stored
        _pair(8, "visit", "blend+t", _cv(1.0)),
        # beaten by 3 SE: the old rule swapped in `t`, today's averages it with the blend
        _pair(8, "spend", "t", _cv(3.0)),
        _pair(9, "spend", "blend+t", _cv(3.0)),
        # stored before anchors (no leads): today's rule cannot be replayed, so it is re-run
        _pair(9, "visit", "blend", _cv(1.0, False)),
        # the outer folds chose `default`: the blend, as stored; a stored rule that disagrees is re-run
        _pair(10, "visit", "blend", _cv(3.0), "default", NESTED),
        _pair(10, "spend", "blend+t", _cv(3.0), "rule", NESTED),
        # stored before nested cross-validation (no per-rule picks): re-run
        {k: v for k, v in _pair(11, "visit", "blend+t", _cv(1.0)).items() if k != "by_rule"},
        # a gate (the funnel default was scored): its anchors (`gated_anchors`) average the level `t` in
        _pair(12, "conversion", "funnel-blend+t", GATED),
        _pair(12, "spend", "funnel-blend", GATED),
    ]
    old.write_text(json.dumps({"args": {"rows": 64_000, "models": "auto,blend"}, "pairs": pairs}))
    args = Namespace(reuse=old, rows=64_000, data=None)
    # `auto` keeps today's rule whatever the outer folds said: pair 10's stored `default` is re-run
    kept = _reusable(args, ["auto", "blend"])
    assert set(kept) == {
        (8, "Mens E-Mail", "visit"),
        (9, "Mens E-Mail", "spend"),
        (10, "Mens E-Mail", "spend"),
        (12, "Mens E-Mail", "conversion"),
    }
    # `auto-nested` follows the outer folds: `default`, the blend, as stored for pair 10's visit
    nested = tmp_path / "nested.json"
    nested.write_text(
        json.dumps({"args": {"rows": 64_000, "models": "auto,blend", "auto": "auto-nested"}, "pairs": pairs})
    )
    kept = _reusable(Namespace(reuse=nested, rows=64_000, data=None), ["auto-nested", "blend"])
    assert set(kept) == {
        (8, "Mens E-Mail", "visit"),
        (9, "Mens E-Mail", "spend"),
        (10, "Mens E-Mail", "visit"),
        (12, "Mens E-Mail", "conversion"),
    }
    assert _reusable(Namespace(reuse=None, rows=64_000, data=None), ["auto", "blend"]) == {}
    with pytest.raises(SystemExit, match="other --rows, --models, --auto or --data"):
        _reusable(Namespace(reuse=old, rows=16_000, data=None), ["auto", "blend"])
    with pytest.raises(SystemExit, match="other --rows, --models, --auto or --data"):
        _reusable(args, ["auto"])
    with pytest.raises(SystemExit, match="other --rows, --models, --auto or --data"):
        _reusable(args, ["auto-nested", "blend"])
    # simulated pairs are never reused for a real file's (or the other way round)
    with pytest.raises(SystemExit, match="--data"):
        _reusable(Namespace(reuse=old, rows=64_000, data=tmp_path / "hillstrom.csv"), ["auto", "blend"])
