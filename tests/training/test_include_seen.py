"""`evaluate recommender --include-seen`: repeats stay relevant and metrics split into repeat / explore."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from tests.experiments.test_evaluate_recommender import TinyPopularity, _dataset
from training.evaluate_recommender import evaluate_model, prepare


def test_repeats_are_relevant_and_split_by_hand():
    setup = prepare(_dataset(), "temporal:0.6", include_seen=True)
    assert setup.relevant == {"u1": {"c"}, "u2": {"d"}, "u3": {"a"}, "u9": {"a"}}
    assert setup.history == {"u1": {"a", "b"}, "u2": {"a", "b"}, "u3": {"a", "c"}}
    row = evaluate_model(TinyPopularity(), setup, k=3)
    # every known user gets [a, b, c]: u1 finds c (rank 3), u2 misses d, u3 finds its repeat a (rank 1)
    assert row["n_users"] == 3
    assert row["recall@3"] == pytest.approx(2 / 3)
    assert row["repeat_recall@3"] == pytest.approx(1.0) and row["repeat_n_users"] == 1
    assert row["repeat_ndcg@3"] == pytest.approx(1.0)
    assert row["explore_recall@3"] == pytest.approx(0.5) and row["explore_n_users"] == 2
    assert row["explore_ndcg@3"] == pytest.approx((1 / math.log2(4)) / 2)


def test_default_protocol_is_unchanged():
    setup = prepare(_dataset(), "temporal:0.6")
    assert "u3" not in setup.relevant and setup.history is None
    assert "repeat_recall@3" not in evaluate_model(TinyPopularity(), setup, k=3)


def test_cli_flag(tmp_path):
    from crosscart.cli import app

    events = _dataset().events.assign(ts=lambda f: f["ts"].astype("int64") // 10**9)
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    args = ["evaluate", "recommender", "--data", f"events:{path}", "--user-col", "user_id", "--item-col",
            "item_id", "--time-col", "ts", "--split", "temporal:0.6", "--models", "gp-topfreq",
            "--json"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--include-seen"])
    assert result.exit_code == 0, result.output
    row = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert row["repeat_recall@10"] == 1.0  # u3's a is its own most frequent item
    assert {"explore_ndcg@10", "repeat_ndcg@10"} <= set(row)
