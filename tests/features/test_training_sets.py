"""Point-in-time training sets: nothing at or after a label's time reaches its features."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from features.training_sets import join_feature_snapshots, training_set

T0 = pd.Timestamp("2025-06-30 15:00", tz="UTC")


@pytest.fixture
def products():
    return pd.DataFrame(
        {
            "product_id": ["x", "y"],
            "category_id": ["C01-01", "C02-01"],
            "brand": ["A", "B"],
            "origin_country": ["JP", "KR"],
            "fulfillment": ["bonded", "bonded"],
            "merchant_id": ["m", "m"],
            "self_operated": [False, False],
            "price": [Decimal("100.00"), Decimal("30.00")],
            "created_at": [T0 - pd.Timedelta(days=400)] * 2,
        }
    )


def log(rows):
    return pd.DataFrame(
        {
            "ts": [T0 + pd.Timedelta(hours=h) for h, *_ in rows],
            "shopper_id": [r[1] for r in rows],
            "product_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "value": [r[4] for r in rows],
        }
    )


@pytest.fixture
def events():
    return log(
        [  # (hours from T0, shopper, product, type, value)
            (-48, "a", "x", "view", 0.0),
            (-1, "a", "x", "cart", 0.0),  # same day, before the label
            (0, "a", "x", "purchase", 100.0),  # the label event itself
            (1, "a", "x", "purchase", 100.0),  # after the label
            (2, "b", "x", "purchase", 100.0),  # someone else, after the label
            (-30, "b", "y", "purchase", 30.0),
        ]
    )


LABELS = pd.DataFrame({"shopper_id": ["a"], "product_id": ["x"], "label_ts": [T0], "label": [1]})


def test_no_event_at_or_after_the_label_reaches_its_features(events, products):
    exact = training_set(LABELS, events, products, snapshot_freq=None).iloc[0]
    assert exact["features_as_of"] <= exact["label_ts"]
    assert exact["shopper_n_purchase"] == 0 and exact["shopper_n_cart"] == 1 and exact["shopper_n_view"] == 1
    assert exact["product_n_purchase"] == 0 and exact["product_n_view"] == 1
    assert (exact["pair_views"], exact["pair_carts"], exact["pair_purchases"]) == (1, 1, 0)
    assert exact["pair_days_since_event"] == pytest.approx(1 / 24)
    # The leak this guards against: features as of a later time would see the label and later events.
    leaky = training_set(
        LABELS.assign(label_ts=T0 + pd.Timedelta(hours=3)), events, products, snapshot_freq=None
    )
    assert leaky.iloc[0]["shopper_n_purchase"] == 2 and leaky.iloc[0]["product_n_purchase"] == 3


def test_daily_snapshots_are_stale_but_never_leaky(events, products):
    daily = training_set(LABELS, events, products).iloc[0]
    assert daily["features_as_of"] == T0.floor("1D")
    assert daily["shopper_n_cart"] == 0 and daily["shopper_n_view"] == 1  # the cart 1 h before is that day
    assert daily["pair_purchases"] == 0


def test_rows_keep_label_order_and_get_their_own_snapshot(events, products):
    labels = pd.DataFrame(
        {
            "shopper_id": ["b", "a", "b"],
            "product_id": ["x", "x", "y"],
            "label_ts": [
                T0 + pd.Timedelta(hours=5),
                T0 - pd.Timedelta(hours=47),
                T0 - pd.Timedelta(hours=31),
            ],
            "label": [1, 0, 1],
        }
    )
    ts = training_set(labels, events, products, snapshot_freq=None)
    assert list(ts["shopper_id"]) == ["b", "a", "b"] and list(ts["label"]) == [1, 0, 1]
    assert (ts["features_as_of"] == ts["label_ts"]).all()
    assert list(ts["product_n_purchase"]) == [3, 0, 0]
    assert list(ts["shopper_n_purchase"]) == [2, 0, 0]


def test_merge_asof_takes_the_latest_snapshot_not_after_the_label():
    days = pd.to_datetime(["2025-06-01", "2025-06-02", "2025-06-03"], utc=True)
    shopper = pd.DataFrame({"as_of": days, "shopper_id": "a", "n": [1, 2, 3]})
    product = pd.DataFrame({"as_of": days, "product_id": "x", "m": [10, 20, 30]})
    labels = pd.DataFrame(
        {
            "shopper_id": ["a", "a", "a"],
            "product_id": ["x"] * 3,
            "label": [1, 0, 1],
            "label_ts": pd.to_datetime(
                ["2025-06-02 12:00", "2025-06-03 00:00", "2025-05-31 00:00"], utc=True
            ),
        }
    )
    out = join_feature_snapshots(labels, shopper, product)
    assert list(out["shopper_n"].fillna(-1)) == [2, 3, -1] and list(out["product_m"].fillna(-1)) == [
        20,
        30,
        -1,
    ]
    assert (out["features_as_of"].dropna() <= out["label_ts"][out["features_as_of"].notna()]).all()


def test_bad_labels_are_refused(events, products):
    with pytest.raises(ValueError, match="lack columns"):
        training_set(LABELS.drop(columns=["label_ts"]), events, products)
    with pytest.raises(ValueError, match="no label_ts"):
        training_set(LABELS.assign(label_ts=[pd.NaT]), events, products)


def test_cli_training_set_on_a_generated_marketplace(tmp_path):
    from typer.testing import CliRunner

    from crosscart.cli import app
    from features.synth import generate_marketplace

    generate_marketplace(tmp_path / "m", "tiny", seed=9)
    events = pd.read_parquet(tmp_path / "m" / "events")
    buys = events[
        (events["event_type"] == "purchase") & (events["ts"] >= pd.Timestamp("2025-11-20", tz="UTC"))
    ]
    labels = (
        buys[["shopper_id", "product_id", "ts"]].rename(columns={"ts": "label_ts"}).assign(label=1).head(60)
    )
    labels.to_parquet(tmp_path / "labels.parquet")
    out = tmp_path / "train.parquet"
    args = ["features", "training-set", "--data", str(tmp_path / "m"), "--out", str(out)]
    args += ["--labels", str(tmp_path / "labels.parquet")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ts = pd.read_parquet(tmp_path / "train.parquet")
    assert len(ts) == len(labels) and (ts["features_as_of"] <= ts["label_ts"]).all()
    purchases = events[events["event_type"] == "purchase"]
    for row in ts.head(10).itertuples():
        seen = purchases[(purchases["shopper_id"] == row.shopper_id) & (purchases["ts"] < row.features_as_of)]
        assert row.shopper_n_purchase == len(seen)
    labels.drop(columns=["label_ts"]).to_parquet(tmp_path / "bad.parquet")
    args[-1] = str(tmp_path / "bad.parquet")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)  # a message, not a traceback
    assert f"error: {tmp_path / 'bad.parquet'}: labels lack columns ['label_ts']" in refused.output
