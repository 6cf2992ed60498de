"""`bench.price_signal`: the information ceiling is a proper posterior R^2 (counting more behaviour
never lowers it), and latent tastes outweigh price in brand choices as the docs say."""

from __future__ import annotations

import json

import pandas as pd

from bench.price_signal import information_ceiling
from features.synth import generate_marketplace


def test_information_ceiling_grows_with_the_behaviour_counted(tmp_path):
    generate_marketplace(tmp_path, "tiny", seed=6)
    as_of = pd.Timestamp(json.loads((tmp_path / "manifest.json").read_text())["end"])
    events = pd.read_parquet(tmp_path / "events").dropna(subset=["shopper_id"])
    products = pd.read_parquet(tmp_path / "products.parquet")
    ids = pd.read_parquet(tmp_path / "shoppers.parquet")["shopper_id"].to_numpy()
    c = information_ceiling(tmp_path, events[events["ts"] < as_of], products, ids)
    assert 0 < c["segment_only"] < c["segment_and_carts"] < c["segment_carts_and_brand_choices"] < 1
    assert c["segment_and_brand_choices"] < c["segment_carts_and_brand_choices"]
    spread = c["brand_utility_spread"]
    assert spread["latent_taste"] > spread["price"] > 0
