"""`bench.uplift --sections`: sections not re-run keep their stored figures and their run's arguments."""

from __future__ import annotations

import json

from bench.uplift import SECTIONS, _merge


def test_merge_keeps_sections_not_rerun_with_their_run_arguments(tmp_path):
    path = tmp_path / "uplift.json"
    old_args = {"seeds": 3, "shoppers": 100_000}
    stored = {
        "planner": {"p": 1},
        "marketplace": [2],
        "ci_coverage": {"c": 3},
        "hillstrom_like_models": {"old": 1},
    }
    path.write_text(json.dumps({**stored, "seconds": 147.0, "args": old_args}))

    merged = _merge(
        path, {"hillstrom_like_models": {"new": 1}}, {"hillstrom": 5.0}, ["hillstrom"], {"seeds": 2}
    )

    assert list(merged)[:4] == list(SECTIONS.values())
    assert merged["planner"] == {"p": 1} and merged["ci_coverage"] == {"c": 3}
    assert merged["hillstrom_like_models"] == {"new": 1}
    assert merged["args"]["planner"] == old_args and merged["args"]["hillstrom"] == {"seeds": 2}
    assert merged["seconds"] == {"previous run, all sections": 147.0, "hillstrom": 5.0}

    path.write_text(json.dumps(merged))
    again = _merge(path, {"ci_coverage": {"c": 4}}, {"coverage": 1.0}, ["coverage"], {"campaigns": 20})
    assert again["hillstrom_like_models"] == {"new": 1} and again["ci_coverage"] == {"c": 4}
    assert again["args"]["hillstrom"] == {"seeds": 2} and again["args"]["coverage"] == {"campaigns": 20}
    assert again["seconds"]["hillstrom"] == 5.0 and again["seconds"]["coverage"] == 1.0


def test_full_run_drops_the_previous_runs_seconds(tmp_path):
    path = tmp_path / "uplift.json"
    path.write_text(json.dumps({"planner": 1, "seconds": 147.0, "args": {}}))
    result = {key: 0 for key in SECTIONS.values()}
    merged = _merge(path, result, {"planner": 1.0}, list(SECTIONS), {})
    assert merged["seconds"] == {"planner": 1.0}
    assert set(merged["args"]) == set(SECTIONS)
