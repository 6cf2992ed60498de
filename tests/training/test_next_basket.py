"""Next-basket evaluation: hand-computed metrics, the last-basket split on messy files, the CLI."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from experiments.repeat_metrics import basket_metrics, split_ranking_metrics
from training.next_basket import load_basket_data, parse_split, prepare_next_basket


def test_basket_metrics_by_hand():
    recommended = {"u1": ["a", "x", "c"], "u2": []}
    targets = {"u1": {"a", "b", "c", "d"}, "u2": {"z"}}
    history = {"u1": {"a", "b"}, "u2": {"y"}}
    got = basket_metrics(recommended, targets, history, k=3)
    ndcg_u1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert got["recall@3"] == pytest.approx((2 / 4 + 0) / 2)
    assert got["ndcg@3"] == pytest.approx(ndcg_u1 / 2)
    assert got["phr@3"] == pytest.approx(0.5)
    assert got["repeat_recall@3"] == pytest.approx(0.5)  # only u1 has a repeat part: a of {a, b}
    assert got["explore_recall@3"] == pytest.approx((1 / 2 + 0 / 1) / 2)  # c of {c, d}; z missed
    assert got["repeat_share@3"] == pytest.approx(1 / 3)  # u2's empty list has no share
    assert (got["n_users"], got["n_repeat_users"], got["n_explore_users"]) == (2, 1, 2)


def test_basket_metrics_reject_duplicates_and_bad_k():
    with pytest.raises(ValueError, match="twice"):
        basket_metrics({"u": ["a", "a"]}, {"u": {"a"}}, {}, k=2)
    with pytest.raises(ValueError, match="k must be"):
        basket_metrics({}, {}, {}, k=0)


def test_split_ranking_metrics_score_each_part_on_its_own_items():
    got = split_ranking_metrics({"u": ["a", "c"]}, {"u": {"a", "b", "c"}}, {"u": {"a", "b"}}, k=2)
    assert got["repeat_recall@2"] == pytest.approx(0.5)  # a of {a, b}
    assert got["explore_recall@2"] == pytest.approx(1.0)  # c of {c}
    assert got["explore_ndcg@2"] == pytest.approx((1 / math.log2(3)) / 1.0)


def test_parse_split():
    assert parse_split("last-basket:0.2:7") == (0.2, 7)
    assert parse_split("last-basket:0.5") == (0.5, 42)
    for bad in ("last-basket:2:1", "last-basket:x:1", "temporal:0.8", "last-basket"):
        with pytest.raises(ValueError, match="last-basket:SHARE:SEED"):
            parse_split(bad)


MESSY = """shopper,sku,order,when,qty
007,A1,10,2026-01-05 10:00,1
007,A1,10,2026-01-05 10:00,1
007,B2,10,2026-01-05 10:01,2
007,A1,9,2026-01-01 09:00,1
007,C3,11,2026-01-09 12:00,1
007,,11,2026-01-09 12:00,1
007,D4,,2026-01-09 12:00,1
008,A1,20,2026-01-02 08:00,1
008,B2,21,2026-01-03 08:00,-1
008,C3,22,2026-01-04 08:00,1
009,A1,30,2026-01-06 08:00,1
"""


def _write(tmp_path, text=MESSY):
    path = tmp_path / "baskets.csv"
    path.write_text(text)
    return path


def test_last_basket_split_on_a_messy_file(tmp_path):
    dataset = load_basket_data(
        f"events:{_write(tmp_path)}", user_col="shopper", item_col="sku", basket_col="order",
        time_col="when", value_col="qty",
    )  # fmt: skip
    assert dataset.report.dropped == {"duplicate row": 1, "missing id": 1, "missing basket id": 1}
    setup = prepare_next_basket(dataset, "last-basket:1.0:0")
    # 007 and 008 have 2+ baskets (008's return is no purchase), 009 has one: never a test shopper
    assert setup.n_eligible == 2 and sorted(setup.targets) == ["007", "008"]
    assert setup.targets == {"007": {"C3"}, "008": {"C3"}}
    assert setup.history == {"007": {"A1", "B2"}, "008": {"A1"}}
    assert "009" in setup.train.user_index and setup.train.matrix.nnz == 4  # 007: A1, B2; 008: A1; 009: A1


def test_without_times_baskets_follow_the_basket_column_numerically(tmp_path):
    text = "u,i,b\nx,late,10\nx,early,9\nx,mid,9\ny,q,1\ny,r,2\n"
    dataset = load_basket_data(f"events:{_write(tmp_path, text)}", user_col="u", item_col="i", basket_col="b")
    setup = prepare_next_basket(dataset, "last-basket:1.0:0")
    assert setup.targets == {"x": {"late"}, "y": {"r"}}  # basket 10 comes after 9 (not as text)


def test_test_shoppers_are_a_seeded_random_share():
    rows = [(f"u{u}", f"i{(u + b) % 7}", f"{u}-{b}") for u in range(50) for b in range(3)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "basket_id"])
    events["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        [int(b.split("-")[1]) for b in events["basket_id"]], unit="D"
    )
    from features.loaders import LoadReport
    from training.evaluate_recommender import Dataset

    dataset = Dataset(events, LoadReport("t", len(events)))
    a = prepare_next_basket(dataset, "last-basket:0.2:1")
    b = prepare_next_basket(dataset, "last-basket:0.2:1")
    c = prepare_next_basket(dataset, "last-basket:0.2:2")
    assert len(a.targets) == 10 and a.targets == b.targets and set(a.targets) != set(c.targets)
    assert a.train.matrix.nnz > 0 and all(len(t) == 1 for t in a.targets.values())


def test_cli_prints_one_json_object_per_model(tmp_path):
    from crosscart.cli import app

    rows = ["u,i,b,t"]
    for u in range(30):
        for b in range(4):
            items = {f"s{u % 3}", f"p{(u * 7 + b) % 11}"}
            rows += [f"c{u},{item},{u}-{b},2026-01-{b + 1:02d}" for item in sorted(items)]
    path = _write(tmp_path, "\n".join(rows) + "\n")
    result = CliRunner().invoke(
        app,
        ["evaluate", "next-basket", "--data", f"events:{path}", "--user-col", "u", "--item-col", "i",
         "--basket-col", "b", "--time-col", "t", "--split", "last-basket:0.5:3", "--k", "10",
         "--models", "popularity,personal-topfreq,tifuknn", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["model"] for row in lines] == ["popularity", "personal-topfreq", "tifuknn"]
    for row in lines:
        for key in ("recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10", "fit_seconds"):
            assert key in row
    # every shopper rebuys their staple s{u % 3}: personal top-frequency always finds it
    assert lines[1]["phr@10"] == 1.0 and lines[1]["repeat_recall@10"] == 1.0
    bad = CliRunner().invoke(app, ["evaluate", "next-basket", "--data", f"events:{path}", "--split", "x"])
    assert bad.exit_code == 2


def test_generated_marketplace_baskets_are_checkout_sessions(tmp_path):
    from features.synth import generate_marketplace

    generate_marketplace(tmp_path / "m", "tiny", seed=3)
    dataset = load_basket_data(f"synthetic:{tmp_path / 'm'}")
    raw = pd.read_parquet(tmp_path / "m" / "events")
    purchases = raw[raw["event_type"] == "purchase"]
    assert len(dataset.events) == len(purchases)
    assert dataset.events["basket_id"].nunique() == purchases["session_id"].nunique()
    setup = prepare_next_basket(dataset, "last-basket:0.2:1")
    assert setup.targets and dataset.item_features is not None
    for user, target in setup.targets.items():  # the target is the user's last session's purchases
        mine = purchases[purchases["shopper_id"] == user]
        last = mine.loc[mine["ts"].idxmax(), "session_id"]
        assert target == set(mine.loc[mine["session_id"] == last, "product_id"])
