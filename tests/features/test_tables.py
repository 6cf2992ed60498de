"""Shopper and product feature tables: values on a hand-made log, strict as_of cut-off, files and CLI."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.tables import build_feature_tables, product_features, shopper_features

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


def at(days_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days_before)


@pytest.fixture
def products():
    return pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3", "p_new"],
            "category_id": ["C01-01", "C01-01", "C02-01", "C02-01"],
            "brand": ["A", "B", "C", "C"],
            "origin_country": ["JP", "KR", "JP", "JP"],
            "fulfillment": ["bonded", "direct_mail", "bonded", "bonded"],
            "merchant_id": ["m1", "m2", "m1", "m1"],
            "self_operated": [False, False, True, True],
            "price": [Decimal("50.00"), Decimal("150.00"), Decimal("1000.00"), Decimal("10.00")],
            "created_at": [at(300), at(300), at(300), at(-1)],
        }
    )


@pytest.fixture
def events():
    rows = [  # (days before as_of, shopper, product, type, value)
        (100, "s1", "p1", "view", 0.0),
        (100, "s1", "p1", "purchase", 50.0),
        (20, "s1", "p2", "view", 0.0),
        (20, "s1", "p2", "cart", 0.0),
        (20, "s1", "p2", "purchase", 150.0),
        (3, "s1", "p3", "view", 0.0),
        (2, "s1", None, "search", 0.0),
        (5, "s2", "p1", "view", 0.0),
        (5, "s2", "p1", "view", 0.0),
        (0, "s1", "p3", "purchase", 1000.0),  # exactly at as_of: must not count
        (-1, "s2", "p1", "purchase", 50.0),  # after as_of: must not count
    ]
    return pd.DataFrame(
        {
            "ts": [at(d) for d, *_ in rows],
            "shopper_id": [r[1] for r in rows],
            "product_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "value": [r[4] for r in rows],
        }
    )


def test_shopper_features_from_a_known_log(events, products):
    f = shopper_features(events, products, AS_OF)
    s1, s2 = f.loc["s1"], f.loc["s2"]
    assert (s1["n_view"], s1["n_cart"], s1["n_purchase"], s1["n_search"]) == (3, 1, 2, 1)
    assert (s1["n_purchase_7d"], s1["n_purchase_30d"], s1["n_purchase_90d"]) == (0, 1, 1)
    assert s1["monetary_total"] == 200.0 and s1["monetary_90d"] == 150.0 and s1["frequency_90d"] == 1
    assert s1["recency_days"] == pytest.approx(20.0)
    assert s1["days_since_last_event"] == pytest.approx(2.0)
    assert s1["cart_rate"] == pytest.approx(1 / 3) and s1["purchase_rate"] == pytest.approx(2 / 3)
    assert s1["avg_basket"] == 100.0 and s1["avg_price_bought"] == 100.0
    # 6 product events: 5 in C01 (root of C01-01), 1 in C02; origins JP x3 (p1, p1, p3), KR x2 (p2)...
    assert s1["category_share_C01"] == pytest.approx(5 / 6) and s1["category_share_C02"] == pytest.approx(
        1 / 6
    )
    assert s1["origin_share_JP"] + s1["origin_share_KR"] == pytest.approx(1.0)
    assert s1["top_category_id"] == "C01-01"
    assert s2["n_purchase"] == 0 and np.isnan(s2["recency_days"]) and s2["purchase_rate"] == 0.0
    assert s2["price_band"] == 0  # p1 at 50 CNY: the everyday band
    assert (f["as_of"] == AS_OF).all()


def test_shopper_features_ignore_events_at_or_after_as_of(events, products):
    before = shopper_features(events, products, AS_OF)
    later = shopper_features(events, products, AS_OF + pd.Timedelta(days=2))
    assert before.loc["s1", "n_purchase"] == 2 and later.loc["s1", "n_purchase"] == 3
    assert before.loc["s2", "n_purchase"] == 0 and later.loc["s2", "n_purchase"] == 1


def test_shoppers_table_adds_attributes_and_drops_future_signups(events, products):
    shoppers = pd.DataFrame(
        {
            "shopper_id": ["s1", "s2", "s3", "s_future"],
            "region": ["Beijing"] * 4,
            "segment": ["premium", "foodie", "tech_fan", "foodie"],
            "created_at": [at(400), at(50), at(10), at(-3)],
        }
    )
    f = shopper_features(events, products, AS_OF, shoppers=shoppers)
    assert list(f.index) == ["s1", "s2", "s3"]
    assert f.loc["s3", "n_view"] == 0 and f.loc["s3", "monetary_total"] == 0
    assert f.loc["s2", "tenure_days"] == pytest.approx(50.0) and f.loc["s1", "segment"] == "premium"


def test_product_features_from_a_known_log(events, products):
    f = product_features(events, products, AS_OF)
    assert "p_new" not in f.index  # not yet created at as_of
    p1, p2, p3 = f.loc["p1"], f.loc["p2"], f.loc["p3"]
    assert (p1["n_view_7d"], p1["n_view_30d"], p1["n_view_90d"], p1["n_view"]) == (2, 2, 2, 3)
    assert p1["n_purchase_90d"] == 0 and p1["n_purchase"] == 1  # the 100-day-old purchase
    assert p1["view_trend_7_30"] == pytest.approx(3 / (2 * 7 / 30 + 1))
    assert p2["purchase_rate_90d"] == 1.0 and p2["cart_rate_90d"] == 1.0 and p2["buyers_90d"] == 1
    assert p2["days_since_last_purchase"] == pytest.approx(20.0)
    assert p3["n_purchase"] == 0  # the purchase exactly at as_of does not count
    assert (p1["price_band"], p2["price_band"], p3["price_band"]) == (0, 1, 3)
    assert p1["price_vs_leaf"] == pytest.approx(50 / 100) and p1["root_category_id"] == "C01"
    assert p3["age_days"] == pytest.approx(300.0)


def test_missing_columns_are_reported(events, products):
    with pytest.raises(ValueError, match="lacks columns"):
        shopper_features(events.drop(columns=["value"]), products, AS_OF)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from features.synth import generate_marketplace

    out = tmp_path_factory.mktemp("tiny")
    generate_marketplace(out, "tiny", seed=4)
    return out


def test_feature_tables_for_a_generated_marketplace(tiny, tmp_path):
    paths = build_feature_tables(tiny, tmp_path, as_of="2025-11-15")
    shoppers = pd.read_parquet(paths["shopper_features"])
    products = pd.read_parquet(paths["product_features"])
    events = pd.read_parquet(tiny / "events")
    before = events[events["ts"] < pd.Timestamp("2025-11-15", tz="UTC")]
    assert shoppers["n_purchase"].sum() == (before["event_type"] == "purchase").sum()
    assert products["n_view"].sum() == (before["event_type"] == "view").sum()
    share_cols = [c for c in shoppers.columns if c.startswith("category_share_")]
    sums = shoppers[share_cols].sum(axis=1)[shoppers["n_view"] > 0]
    np.testing.assert_allclose(sums, 1.0)


def test_cli_builds_the_tables(tiny, tmp_path):
    from crosscart.cli import app

    result = CliRunner().invoke(app, ["features", "build", "--data", str(tiny), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "product_features.parquet").index.name == "product_id"
    result = CliRunner().invoke(
        app, ["features", "build", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]
    )
    assert result.exit_code != 0 and "crosscart generate" in result.output


@pytest.mark.parametrize("command", ["build", "job", "price-sensitivity"])
def test_an_as_of_that_is_no_time_is_refused_in_one_line_before_any_work(tmp_path, command):
    """`--as-of 2026-99-01` ended in pandas' DateParseError traceback."""
    from crosscart.cli import app

    args = [
        "features",
        command,
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--as-of",
        "2026-99-01",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "'2026-99-01' is no time" in result.output and not (tmp_path / "out").exists()
