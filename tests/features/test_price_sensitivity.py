"""`features.price_sensitivity`: per-shopper price sensitivity from choice data recovers a planted
slope where the mean price position of what a shopper carts or views cannot (their viewing mix
confounds it), handles shoppers without views or carts, reads nothing after the as-of time, and is
deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from features.campaign_features import shopper_price_features
from features.price_sensitivity import SENSITIVITY_FEATURES, shopper_price_sensitivity, shrunk_logit_slopes

AS_OF = pd.Timestamp("2025-12-01", tz="UTC")
T0 = pd.Timestamp("2025-09-01", tz="UTC")


def _catalog(rng, categories: int = 3, brands_per_category: int = 6, products_per_brand: int = 5):
    """Products whose brand sets the price tier: brand b of a category sits at an evenly spaced log
    price position, its products close around it."""
    rows = []
    for c in range(categories):
        for b, tier in enumerate(np.linspace(-0.8, 0.8, brands_per_category)):
            for k in range(products_per_brand):
                price = 100.0 * np.exp(tier + rng.normal(0, 0.05))
                rows.append((f"P{c}{b}{k}", f"C{c}", f"B{c}-{b}", f"{price:.2f}"))
    return pd.DataFrame(rows, columns=["product_id", "category_id", "brand", "price"])


def _events(shopper, product, etype, session, minutes):
    return pd.DataFrame(
        {
            "ts": T0 + pd.to_timedelta(np.asarray(minutes, dtype=float), unit="min"),
            "shopper_id": shopper,
            "product_id": product,
            "event_type": etype,
            "session_id": session,
        }
    )


def _planted_cart_world(seed=0, shoppers=300, views=80):
    """Each shopper carts a viewed product with sigmoid(a + slope x log price position); what they view
    leans cheap or dear by a taste independent of the slope, and strongly."""
    rng = np.random.default_rng(seed)
    products = _catalog(rng)
    price = products["price"].astype(float)
    position = np.log(price / price.groupby(products["category_id"]).transform("median")).to_numpy()
    slope = rng.uniform(-3.0, 0.0, shoppers)
    intercept = rng.normal(-1.0, 0.5, shoppers)
    lean = rng.uniform(-2.5, 2.5, shoppers)  # which end of the ladder they browse
    frames = []
    for i in range(shoppers):
        w = np.exp(lean[i] * position)
        seen = rng.choice(len(products), size=views, p=w / w.sum())
        carted = rng.random(views) < expit(intercept[i] + slope[i] * position[seen])
        sid = f"U{i:04d}"
        pid = products["product_id"].to_numpy()[seen]
        session = [f"S{i}-{j}" for j in range(views)]
        frames.append(_events(sid, pid, "view", session, np.arange(views) * 60))
        frames.append(
            _events(sid, pid[carted], "cart", np.asarray(session)[carted], np.arange(views)[carted] * 60 + 1)
        )
    return pd.concat(frames, ignore_index=True), products, [f"U{i:04d}" for i in range(shoppers)], slope


def test_cart_slope_recovers_a_planted_slope_the_mean_carted_position_misses():
    events, products, ids, slope = _planted_cart_world()
    est = shopper_price_sensitivity(events, products, ids, AS_OF)
    mean_position = shopper_price_features(events.assign(value=0.0), products, ids, AS_OF)
    r_est = np.corrcoef(est["price_slope_cart"], slope)[0, 1]
    r_carted = np.corrcoef(mean_position["price_position_carted"], slope)[0, 1]
    r_viewed = np.corrcoef(mean_position["price_position_viewed"], slope)[0, 1]
    # one threshold: the estimate clears it, the mean positions of what they cart and view do not
    assert r_est > 0.7
    assert abs(r_carted) < 0.7 and abs(r_viewed) < 0.7
    # the slope is on the population's scale: its mean is near the planted mean slope
    assert est["price_slope_cart"].mean() == pytest.approx(slope.mean(), abs=0.3)


def _planted_brand_world(seed=1, shoppers=300, choices=60):
    """Each shopper picks brands within a category at the category's popularity tilted by
    tilt x the brand's price tier. In C0 the popular brands are cheap, in C1 dear, and shoppers differ
    in how much they browse each: the mean position of what they view follows that mix."""
    rng = np.random.default_rng(seed)
    products = _catalog(rng, categories=2)
    tiers = np.linspace(-0.8, 0.8, 6)
    base = {"C0": np.exp(-2.0 * tiers), "C1": np.exp(2.0 * tiers)}
    tilt = rng.uniform(-2.0, 2.0, shoppers)
    mix = rng.uniform(0.0, 1.0, shoppers)
    who = np.repeat(np.arange(shoppers), choices)
    cat = (rng.random(len(who)) >= mix[who]).astype(int)  # 0: C0, 1: C1
    w = np.stack([base["C0"], base["C1"]])[cat] * np.exp(tilt[who, None] * tiers[None, :])
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    brand = np.minimum((cum < rng.random(len(who))[:, None]).sum(axis=1), 5)
    pid = [f"P{c}{b}{k}" for c, b, k in zip(cat, brand, rng.integers(5, size=len(who)), strict=True)]
    ids = np.array([f"U{i:04d}" for i in range(shoppers)])
    session = [f"S{j}" for j in range(len(who))]
    events = _events(ids[who], pid, "view", session, np.arange(len(who)))
    return events, products, list(ids), tilt


def test_view_tilt_recovers_a_planted_brand_price_tilt_the_mean_viewed_position_misses():
    events, products, ids, tilt = _planted_brand_world()
    est = shopper_price_sensitivity(events, products, ids, AS_OF)
    mean_position = shopper_price_features(events.assign(value=0.0), products, ids, AS_OF)
    assert np.corrcoef(est["price_tilt_view"], tilt)[0, 1] > 0.8
    assert abs(np.corrcoef(mean_position["price_position_viewed"], tilt)[0, 1]) < 0.8


def test_search_slope_recovers_a_planted_slope_with_position_bias():
    rng = np.random.default_rng(2)
    products = _catalog(rng)
    price = products["price"].astype(float)
    position = np.log(price / price.groupby(products["category_id"]).transform("median")).to_numpy()
    shoppers, searches, page = 300, 12, 10
    slope = rng.uniform(-3.0, 0.0, shoppers)
    n = shoppers * searches * page
    who = np.repeat(np.arange(shoppers), searches * page)
    shown = np.concatenate(
        [rng.choice(len(products), size=page, replace=False) for _ in range(shoppers * searches)]
    )
    slot = np.tile(np.arange(1, page + 1), shoppers * searches)
    seen = rng.random(n) < 1.0 / slot
    clicked = seen & (rng.random(n) < expit(0.5 + slope[who] * position[shown]))
    logs = pd.DataFrame(
        {
            "ts": T0 + pd.to_timedelta(np.repeat(np.arange(shoppers * searches), page), unit="min"),
            "shopper_id": np.array([f"U{i:04d}" for i in range(shoppers)])[who],
            "position": slot,
            "product_id": products["product_id"].to_numpy()[shown],
            "clicked": clicked,
        }
    )
    no_events = _events([], [], [], [], [])
    ids = [f"U{i:04d}" for i in range(shoppers)]
    est = shopper_price_sensitivity(no_events, products, ids, AS_OF, search_logs=logs)
    assert np.corrcoef(est["price_slope_search"], slope)[0, 1] > 0.5


def test_shoppers_without_views_or_carts_get_the_population_value_and_later_events_are_unseen():
    events, products, ids, _ = _planted_cart_world(shoppers=60)
    quiet = _events("QUIET", "P000", "view", "Sq", [10])  # views, never carts
    late = _events("LATE", ["P000", "P000"], ["view", "cart"], "Sl", [60 * 24 * 200] * 2)  # after as_of
    est = shopper_price_sensitivity(
        pd.concat([events, quiet, late], ignore_index=True), products, [*ids, "QUIET", "LATE", "NONE"], AS_OF
    )
    assert np.isfinite(est.to_numpy()).all()
    # no views before as_of: no deviation from the population
    assert est.loc["LATE"].tolist() == pytest.approx(est.loc["NONE"].tolist())
    assert est.loc["NONE", "price_tilt_view"] == 0.0
    # one view without a cart moves the slope less than the spread between shoppers with 80 views
    shift = abs(est.loc["QUIET", "price_slope_cart"] - est.loc["NONE", "price_slope_cart"])
    assert 0 < shift < est.loc[ids, "price_slope_cart"].std()
    # nobody at all
    empty = shopper_price_sensitivity(events.iloc[0:0], products, ["A", "B"], AS_OF)
    assert list(empty.columns) == list(SENSITIVITY_FEATURES)
    assert np.isfinite(empty.to_numpy()).all()


def test_deterministic_and_independent_of_row_order():
    events, products, ids, _ = _planted_cart_world(shoppers=80)
    first = shopper_price_sensitivity(events, products, ids, AS_OF)
    again = shopper_price_sensitivity(events, products, ids, AS_OF)
    shuffled = shopper_price_sensitivity(events.sample(frac=1.0, random_state=3), products, ids, AS_OF)
    pd.testing.assert_frame_equal(first, again)
    np.testing.assert_allclose(first.to_numpy(), shuffled.to_numpy(), rtol=1e-6, atol=1e-9)


def test_shrinkage_pulls_noise_to_zero_and_keeps_real_spread():
    """With no per-group slope, EM's prior variance collapses and the estimates stay near 0; with a
    real spread, it is kept."""
    rng = np.random.default_rng(4)
    groups, per = 400, 60
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(0, 1, len(g))
    trials = np.ones(len(g))
    for spread, check in ((0.0, lambda b: np.std(b) < 0.1), (1.0, lambda b: 0.6 < np.std(b) < 1.2)):
        true = rng.normal(0, spread, groups) if spread else np.zeros(groups)
        y = (rng.random(len(g)) < expit(-0.5 + true[g] * x)).astype(float)
        b, var = shrunk_logit_slopes(g, x, y, trials, np.full(len(g), -0.5), groups)
        assert check(b), np.std(b)
        assert (var > 0).all()


def test_shoppers_without_rows_do_not_change_the_others_estimates():
    """Groups without rows (shoppers who never viewed) once entered EM's variance average at the
    current variance, slowing it to a false stop: the more of them, the less shrinkage was learnt."""
    rng = np.random.default_rng(5)
    groups, per = 200, 40
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(0, 1, len(g))
    true = rng.normal(0, 0.8, groups)
    y = (rng.random(len(g)) < expit(-1.0 + true[g] * x)).astype(float)
    trials, offset = np.ones(len(g)), np.full(len(g), -1.0)
    alone, _ = shrunk_logit_slopes(g, x, y, trials, offset, groups)
    among, var = shrunk_logit_slopes(g, x, y, trials, offset, groups * 50)
    np.testing.assert_allclose(among[:groups], alone, atol=1e-6)
    assert (among[groups:] == 0).all() and (var[groups:] > 0).all()


def test_cli_writes_every_shoppers_estimates_and_reads_search_logs_when_present(tmp_path):
    from typer.testing import CliRunner

    from crosscart.cli import app
    from features.synth import generate_marketplace

    data = tmp_path / "market"
    generate_marketplace(data, "tiny", seed=5)
    out = tmp_path / "sensitivity.parquet"
    result = CliRunner().invoke(
        app,
        ["features", "price-sensitivity", "--data", str(data), "--out", str(out), "--as-of", "2025-11-01"],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    shoppers = pd.read_parquet(data / "shoppers.parquet")
    assert sorted(table["shopper_id"]) == sorted(shoppers["shopper_id"])
    assert list(table.columns) == ["shopper_id", *SENSITIVITY_FEATURES]
    assert np.isfinite(table[list(SENSITIVITY_FEATURES)].to_numpy()).all()
    assert table["price_slope_cart"].std() > 0 and table["price_tilt_view"].std() > 0

    # an impression log: every view shown at a random position, a click on a tenth of them
    views = pd.read_parquet(data / "events", columns=["ts", "shopper_id", "product_id", "event_type"])
    views = views[views["event_type"] == "view"]
    rng = np.random.default_rng(0)
    views.assign(position=rng.integers(1, 11, len(views)), clicked=rng.random(len(views)) < 0.1).drop(
        columns="event_type"
    ).to_parquet(data / "search_logs.parquet")
    for flag, expected in (([], True), (["--no-search-logs"], False)):
        result = CliRunner().invoke(
            app, ["features", "price-sensitivity", "--data", str(data), "--out", str(out), *flag]
        )
        assert result.exit_code == 0, result.output
        assert ("price_slope_search" in pd.read_parquet(out).columns) is expected

    result = CliRunner().invoke(
        app, ["features", "price-sensitivity", "--data", str(tmp_path / "nope"), "--out", str(out)]
    )
    assert result.exit_code != 0 and "crosscart generate" in result.output
