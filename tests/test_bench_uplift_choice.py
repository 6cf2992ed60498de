"""`bench.uplift_choice --reuse`: a stored pair is copied only when today's `decide` makes the same
choice from its stored cross-validation summary; any other pair, or another run setup, is re-run."""

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


def test_reuse_copies_only_pairs_whose_choice_is_unchanged(tmp_path):
    old = tmp_path / "old.json"
    pairs = [
        # not beaten (1 SE < 2), but the anchor t is level with the blend: averaged in, as stored
        {"seed": 8, "arm": "Mens E-Mail", "outcome": "visit", "chosen": "blend+t", "auto_cv": _cv(1.0)},
        # beaten by 3 SE: the old rule swapped in `t`, today's averages it with the blend
        {"seed": 8, "arm": "Mens E-Mail", "outcome": "spend", "chosen": "t", "auto_cv": _cv(3.0)},
        {"seed": 9, "arm": "Mens E-Mail", "outcome": "spend", "chosen": "blend+t", "auto_cv": _cv(3.0)},
        # stored before anchors (no leads): today's rule cannot be replayed, so it is re-run
        {"seed": 9, "arm": "Mens E-Mail", "outcome": "visit", "chosen": "blend", "auto_cv": _cv(1.0, False)},
    ]
    old.write_text(json.dumps({"args": {"rows": 64_000, "models": "auto,blend"}, "pairs": pairs}))
    args = Namespace(reuse=old, rows=64_000)
    kept = _reusable(args, ["auto", "blend"])
    assert set(kept) == {(8, "Mens E-Mail", "visit"), (9, "Mens E-Mail", "spend")}
    assert _reusable(Namespace(reuse=None, rows=64_000), ["auto", "blend"]) == {}
    with pytest.raises(SystemExit, match="other --rows or --models"):
        _reusable(Namespace(reuse=old, rows=16_000), ["auto", "blend"])
    with pytest.raises(SystemExit, match="other --rows or --models"):
        _reusable(args, ["auto"])
